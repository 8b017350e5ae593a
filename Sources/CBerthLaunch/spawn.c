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

/* Every process Berth starts that is neither a container's first process
 * nor a command inside a container: plugins, detached monitors, commands
 * in named network namespaces. */

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

/* The child's side: only async-signal-safe calls (the caller may have other
 * threads), so no fork here, and clone3 was safe. */
static _Noreturn void spawned(const struct berth_spawn *s, int netns_fd, int in_cgroup2, pid_t parent, int report_fd) {
    int kept = -1;
    if (s->die_with_caller && (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)) { errno = ECHILD; goto failed; }
    /* Into the cgroups first (v1 through the host's /sys), then the namespace. */
    if (launch_join_v1(s->cgroups) != 0 || launch_join_v2(s->cgroups, in_cgroup2) != 0) goto failed;
    if (netns_fd >= 0 && setns(netns_fd, CLONE_NEWNET) != 0) goto failed;
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
       the child runs. */
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

pid_t berth_spawn(const struct berth_spawn *s) {
    int netns_fd = -1;
    if (s->netns && (netns_fd = open(s->netns, O_RDONLY | O_CLOEXEC)) < 0) return -1;
    int report[2] = { -1, -1 };
    if (s->report_exec && pipe2(report, O_CLOEXEC) != 0) {
        int saved = errno;
        if (netns_fd >= 0) close(netns_fd);
        errno = saved;
        return -1;
    }
    pid_t parent = getpid();
    int in_cgroup2 = 0;
    pid_t pid = launch_fork_in(s->cgroups, 0, &in_cgroup2);
    if (pid == 0) spawned(s, netns_fd, in_cgroup2, parent, report[1]);
    int saved = errno;
    if (netns_fd >= 0) close(netns_fd);
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
