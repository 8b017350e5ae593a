#define _GNU_SOURCE
#include "launch_internal.h"

#include <errno.h>
#include <stdint.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <net/if.h>
#include <sys/wait.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <grp.h>
#include <linux/capability.h>
#include <unistd.h>
#include <linux/close_range.h>
#include <pthread.h>
#include <time.h>

/* The steps every child shares, between fork (or clone) and exec, and
 * waiting for children. */

/* clone3's arguments (linux/sched.h's struct clone_args, which clashes with <sched.h>). */
struct berth_clone_args {
    uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid, set_tid_size, cgroup;
};
#define BERTH_CLONE_INTO_CGROUP 0x200000000ULL

/* Forks (with `flags`, namespaces among them) a child created in the
 * cgroup2 cgroup `cg->cgroup2_fd` when there is one: clone3 with
 * CLONE_INTO_CGROUP, without a stack of its own, so the child returns here
 * as from fork (only async-signal-safe calls there, and no fork: no atfork
 * handler ran). `*in_cgroup2` says whether that worked. Otherwise a plain
 * fork, or -1 when `flags` asks for more than fork does. */
pid_t launch_fork_in(const struct berth_cgroups *cg, int flags, int *in_cgroup2) {
    *in_cgroup2 = 0;
    if (cg && cg->cgroup2_fd >= 0) {
        struct berth_clone_args ca;
        memset(&ca, 0, sizeof ca);
        ca.flags = (uint64_t)(unsigned)flags | BERTH_CLONE_INTO_CGROUP;
        ca.exit_signal = SIGCHLD;
        ca.cgroup = (uint64_t)cg->cgroup2_fd;
        pid_t pid = (pid_t)syscall(SYS_clone3, &ca, sizeof ca);
        if (pid >= 0) {
            *in_cgroup2 = 1;
            return pid;
        }
    }
    if (flags != 0) return -1;  /* the caller clones in its own way */
    return fork();
}

/* In a single-threaded child: joins the v1 cgroups (writing "0" to `tasks`
 * moves only the writing thread: no global lock, no wait). 0, or -1. */
int launch_join_v1(const struct berth_cgroups *cg) {
    for (int i = 0; cg && i < cg->tasks_count; i++) {
        int fd = open(cg->tasks[i], O_WRONLY | O_CLOEXEC);
        if (fd < 0) return -1;
        ssize_t n = write(fd, "0", 1);
        close(fd);
        if (n != 1) return -1;
    }
    return 0;
}

/* In a child not created in its cgroup2 cgroup: moves itself there. 0, or -1. */
int launch_join_v2(const struct berth_cgroups *cg, int in_cgroup2) {
    if (!cg || cg->cgroup2_fd < 0 || in_cgroup2) return 0;
    int fd = openat(cg->cgroup2_fd, "cgroup.procs", O_WRONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t n = write(fd, "0", 1);
    close(fd);
    return n == 1 ? 0 : -1;
}

void launch_report(int fd, int err, const char *what) {
    /* "errno:what" without stdio: snprintf is not async-signal-safe. */
    char buf[256];
    size_t n = 0;
    char digits[16];
    int d = 0, e = err;
    do { digits[d++] = (char)('0' + e % 10); e /= 10; } while (e > 0 && d < 15);
    while (d > 0 && n < sizeof(buf) - 1) buf[n++] = digits[--d];
    if (n < sizeof(buf) - 1) buf[n++] = ':';
    for (const char *p = what; *p && n < sizeof(buf) - 1; p++) buf[n++] = *p;
    ssize_t ignored = write(fd, buf, n);
    (void)ignored;
}

/* The workload starts with every signal at its default action and none
 * blocked, whatever the caller ignored or blocked (ignored dispositions
 * survive execve). */
void launch_reset_signals(const sigset_t *mask) {
    struct sigaction dfl;
    memset(&dfl, 0, sizeof(dfl));
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; sig++) {
        if (sig != SIGKILL && sig != SIGSTOP) sigaction(sig, &dfl, NULL);
    }
    sigprocmask(SIG_SETMASK, mask, NULL);
}

/* After a failed exec of `command` in a child: says so on stderr in one
 * line ("Error: cannot execute X: REASON", as berthctl prints errors) and
 * exits 127 when it does not exist, 126 otherwise, as shells do. Only
 * async-signal-safe calls. */
_Noreturn void launch_exec_failed(const char *command) {
    int err = errno;
    const char *reason = err == ENOENT ? "No such file or directory" : err == EACCES ? "Permission denied"
                       : err == ENOEXEC ? "Exec format error" : err == ENOTDIR ? "Not a directory"
                       : err == ELOOP ? "Too many levels of symbolic links" : "cannot be run";
    char buf[512];
    size_t n = 0;
    const char *parts[] = {"Error: cannot execute ", command, ": ", reason, "\n"};
    for (unsigned i = 0; i < 5; i++) {
        for (const char *p = parts[i]; *p && n < sizeof(buf) - 2; p++) buf[n++] = *p;
    }
    if (buf[n - 1] != '\n') buf[n++] = '\n';
    ssize_t ignored = write(2, buf, n);
    (void)ignored;
    _exit(err == ENOENT || err == ENOTDIR ? 127 : 126);
}

_Noreturn void launch_fail(int fd, const char *what) {
    launch_report(fd, errno, what);
    _exit(127);
}

/* Forwards every catchable signal to `workload`, reaps every child, and
 * exits with the workload's status once it ends. `all` must be blocked. */
_Noreturn void launch_supervise(pid_t workload, const sigset_t *all) {
    for (;;) {
        siginfo_t info;
        int sig = sigwaitinfo(all, &info);
        if (sig < 0) continue;
        if (sig != SIGCHLD) {
            kill(workload, sig);
            continue;
        }
        for (;;) {
            int status;
            pid_t reaped = waitpid(-1, &status, WNOHANG);
            if (reaped <= 0) break;
            if (reaped == workload) _exit(berth_exit_code(status));
        }
    }
}

/* The new network namespace starts with lo down. */
int launch_loopback_up(void) {
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0) return -1;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
    int rc = ioctl(s, SIOCGIFFLAGS, &ifr);
    if (rc == 0) {
        ifr.ifr_flags |= IFF_UP;
        rc = ioctl(s, SIOCSIFFLAGS, &ifr);
    }
    close(s);
    return rc;
}

int berth_exit_code(int wait_status) {
    if (WIFEXITED(wait_status)) return WEXITSTATUS(wait_status);
    if (WIFSIGNALED(wait_status)) return 128 + WTERMSIG(wait_status);
    return 255;
}

int berth_wait_forwarding(pid_t pid) {
    sigset_t forwarded, old;
    sigemptyset(&forwarded);
    int list[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGCHLD };
    for (size_t i = 0; i < sizeof(list) / sizeof(list[0]); i++) sigaddset(&forwarded, list[i]);
    pthread_sigmask(SIG_BLOCK, &forwarded, &old);
    int status = 0;
    for (;;) {
        pid_t done = waitpid(pid, &status, WNOHANG);
        if (done == pid) break;
        if (done < 0 && errno != EINTR) { pthread_sigmask(SIG_SETMASK, &old, NULL); return -1; }
        struct timespec tick = { 0, 200 * 1000 * 1000 };
        siginfo_t info;
        int sig = sigtimedwait(&forwarded, &info, &tick);
        if (sig > 0 && sig != SIGCHLD) kill(pid, sig);
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return status;
}
