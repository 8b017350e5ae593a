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

/* Every process Berth starts but a container's first process: plugins,
 * detached monitors, commands in named network namespaces and in running
 * containers. */

/* Puts `src` (a descriptor, BERTH_FD_INHERIT or BERTH_FD_NULL) at `target`. 0, or -1. */
static int place(int src, int target) {
    if (src == BERTH_FD_INHERIT) return 0;
    if (src == BERTH_FD_NULL) {
        int null = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (null < 0) return -1;
        int rc = dup2(null, target) < 0 ? -1 : 0;
        close(null);
        return rc;
    }
    if (src == target) return fcntl(target, F_SETFD, 0);
    return dup2(src, target) < 0 ? -1 : 0;
}

/* `a` and `b` joined into `out` (of `size`); 0, or -1 when it does not fit. */
static int join_path(char *out, size_t size, const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    if (la + 1 + lb + 1 > size) return -1;
    memcpy(out, a, la);
    out[la] = '/';
    memcpy(out + la + 1, b, lb + 1);
    return 0;
}

/* `ip netns exec`'s /etc/netns/NAME: a mount namespace of the process's own
 * (slave of the host's, so nothing leaks back) with each file of `dir`
 * bound over /etc's. No directory: nothing to do. Directory entries are read
 * with getdents64 (no malloc in the child). 0, or -1 with errno. */
static int overlay_etc(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return errno == ENOENT || errno == ENOTDIR ? 0 : -1;
    if (unshare(CLONE_NEWNS) != 0 || mount("", "/", NULL, MS_SLAVE | MS_REC, NULL) != 0) {
        close(fd);
        return -1;
    }
    char buffer[4096];
    long n;
    while ((n = syscall(SYS_getdents64, fd, buffer, sizeof buffer)) > 0) {
        for (long offset = 0; offset < n;) {
            struct { uint64_t ino; int64_t off; unsigned short reclen; unsigned char type; char name[]; } *entry = (void *)(buffer + offset);
            offset += entry->reclen;
            if (entry->name[0] == '.') continue;
            char from[512], to[512];
            if (join_path(from, sizeof from, dir, entry->name) != 0 || join_path(to, sizeof to, "/etc", entry->name) != 0) continue;
            /* As ip does: a file /etc lacks is left out, not created. */
            if (access(to, F_OK) != 0) continue;
            if (mount(from, to, NULL, MS_BIND, NULL) != 0) {
                close(fd);
                return -1;
            }
        }
    }
    close(fd);
    return n < 0 ? -1 : 0;
}

/* The namespaces `enter_pid` joins, in this order (mnt last: after it the
 * host's /proc is gone). */
static const char *const entered_kinds[] = { "cgroup", "ipc", "uts", "net", "pid", "mnt" };
enum { ENTERED = 6 };

/* The child's side: only async-signal-safe calls (the caller may have other
 * threads), so no fork here, and clone3 was safe. */
static _Noreturn void spawned(const struct berth_spawn *s, int netns_fd, const int *entered, int in_cgroup2, pid_t parent,
                              int report_fd) {
    int kept = -1;
    if (s->die_with_caller && (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)) { errno = ECHILD; goto failed; }
    /* Into the cgroups first (v1 through the host's /sys, before a mount
       namespace hides it), then the namespaces. */
    if (launch_join_v1(s->cgroups) != 0) goto failed;
    for (int i = 0; s->enter_pid > 0 && i < ENTERED; i++) {
        if (setns(entered[i], 0) != 0) goto failed;
    }
    if (netns_fd >= 0 && setns(netns_fd, CLONE_NEWNET) != 0) goto failed;
    if (s->etc_overlay && s->enter_pid == 0 && overlay_etc(s->etc_overlay) != 0) goto failed;
    if (s->enter_pid > 0) {
        /* Joining a pid namespace applies to children: the command runs as
           this process's child, created in the cgroup2 cgroup (this process
           is single-threaded now: clone3 is safe), and this process stays
           as its supervisor, forwarding signals and passing on its status. */
        sigset_t all;
        sigfillset(&all);
        sigprocmask(SIG_BLOCK, &all, NULL);
        pid_t inner = launch_fork_in(s->cgroups, 0, &in_cgroup2);
        if (inner < 0) goto failed;
        if (inner > 0) launch_supervise(inner, &all);
    }
    if (launch_join_v2(s->cgroups, in_cgroup2) != 0) goto failed;
    if (s->new_session && setsid() < 0) goto failed;
    if (s->reset_signals) {
        sigset_t none;
        sigemptyset(&none);
        launch_reset_signals(&none);
    }
    if (s->ignore_sigpipe) {
        /* A write to a pipe whose reader died fails with EPIPE instead of killing it. */
        struct sigaction ignore;
        memset(&ignore, 0, sizeof ignore);
        ignore.sa_handler = SIG_IGN;
        if (sigaction(SIGPIPE, &ignore, NULL) != 0) goto failed;
    }
    if (s->enter_pid > 0) {
        /* Inside a container: its root, no new privileges, Docker's default capabilities. */
        if (chdir("/") != 0) goto failed;
        prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
        if (launch_drop_capabilities() != 0) goto failed;
    }
    /* The passed descriptor goes out of the way of 0-5 first. */
    if (s->pass_fd >= 0 && (kept = fcntl(s->pass_fd, F_DUPFD_CLOEXEC, 10)) < 0) goto failed;
    if (place(s->stdin_fd, 0) != 0 || place(s->stdout_fd, 1) != 0 || place(s->stderr_fd, 2) != 0) goto failed;
    int highest = 2;
    if (report_fd >= 0) {
        /* The report pipe, close-on-exec, tells the caller whether execve worked. */
        int slot = s->pass_at == 3 ? 4 : 3;
        if (report_fd != slot && dup3(report_fd, slot, O_CLOEXEC) < 0) goto failed;
        report_fd = slot;
        highest = slot;
    }
    if (kept >= 0) {
        if (dup2(kept, s->pass_at) < 0) goto failed;
        if (s->pass_at > highest) highest = s->pass_at;
    }
    /* Nothing else of the caller's: a pipe the child kept (another thread's,
       in a library caller) would hold that pipe's reader open for as long as
       the child runs, and a host descriptor inside a container would be a
       way out of it. */
    close_range((unsigned)highest + 1, ~0U, 0);
    if (s->path) execve(s->path, s->argv, s->envp); else execvpe(s->argv[0], s->argv, s->envp);
    if (report_fd < 0) launch_exec_failed(s->argv[0]);
failed:
    if (report_fd >= 0) {
        int err = errno;
        ssize_t ignored = write(report_fd, &err, sizeof err);
        (void)ignored;
        _exit(127);
    }
    _exit(125);
}

/* Writes "/proc/PID/ns/KIND" into `out` without stdio. */
static void ns_path(char *out, size_t size, pid_t pid, const char *kind) {
    char digits[16];
    int d = 0;
    do { digits[d++] = (char)('0' + pid % 10); pid /= 10; } while (pid > 0 && d < 15);
    size_t n = 0;
    for (const char *p = "/proc/"; *p && n < size - 1; p++) out[n++] = *p;
    while (d > 0 && n < size - 1) out[n++] = digits[--d];
    for (const char *p = "/ns/"; *p && n < size - 1; p++) out[n++] = *p;
    for (const char *p = kind; *p && n < size - 1; p++) out[n++] = *p;
    out[n] = 0;
}

static void close_all(int *fds, int count) {
    int saved = errno;
    for (int i = 0; i < count; i++) if (fds[i] >= 0) close(fds[i]);
    errno = saved;
}

pid_t berth_spawn(const struct berth_spawn *s) {
    /* What the child enters is opened here, where errors can be returned:
       the namespaces of `enter_pid`, then the network namespace file. */
    int opened[ENTERED + 1];
    for (int i = 0; i < ENTERED + 1; i++) opened[i] = -1;
    for (int i = 0; s->enter_pid > 0 && i < ENTERED; i++) {
        char path[64];
        ns_path(path, sizeof path, s->enter_pid, entered_kinds[i]);
        if ((opened[i] = open(path, O_RDONLY | O_CLOEXEC)) < 0) { close_all(opened, ENTERED + 1); return -1; }
    }
    if (s->netns && (opened[ENTERED] = open(s->netns, O_RDONLY | O_CLOEXEC)) < 0) { close_all(opened, ENTERED + 1); return -1; }
    int report[2] = { -1, -1 };
    if (s->report_exec && pipe2(report, O_CLOEXEC) != 0) { close_all(opened, ENTERED + 1); return -1; }
    pid_t parent = getpid();
    int in_cgroup2 = 0;
    /* Entering a container, the supervisor stays out of its cgroup2 cgroup
       (it is the command's parent, not part of the container's load); the
       command is created there. */
    pid_t pid = launch_fork_in(s->enter_pid > 0 ? NULL : s->cgroups, 0, &in_cgroup2);
    if (pid == 0) spawned(s, opened[ENTERED], opened, in_cgroup2, parent, report[1]);
    int saved = errno;
    close_all(opened, ENTERED + 1);
    if (report[1] >= 0) close(report[1]);
    if (pid < 0) {
        if (report[0] >= 0) close(report[0]);
        errno = saved;
        return -1;
    }
    if (report[0] < 0) return pid;
    int err = 0;
    ssize_t n;
    do { n = read(report[0], &err, sizeof err); } while (n < 0 && errno == EINTR);
    close(report[0]);
    if (n == (ssize_t)sizeof err) {
        int status;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
        errno = err;
        return -1;
    }
    return pid;
}
