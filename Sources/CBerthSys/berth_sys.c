#define _GNU_SOURCE
#include "berth_sys.h"

#include <errno.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/vfs.h>
#include <linux/nsfs.h>
#include <fcntl.h>
#include <unistd.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <linux/close_range.h>

#ifndef NSFS_MAGIC
#define NSFS_MAGIC 0x6e736673
#endif

int berth_setns(int fd, int nstype) {
    return setns(fd, nstype);
}

int berth_clone_newnet(void) {
    return CLONE_NEWNET;
}

int berth_namespace_type(int fd) {
    struct statfs sfs;
    if (fstatfs(fd, &sfs) != 0) {
        return -1;
    }
    if (sfs.f_type != NSFS_MAGIC) {
        return 0;
    }
    return ioctl(fd, NS_GET_NSTYPE);
}

int berth_memfd(const char *name) {
    return memfd_create(name, MFD_CLOEXEC);
}

int berth_pipe_cloexec(int fds[2]) {
    return pipe2(fds, O_CLOEXEC);
}

pid_t berth_spawn_plugin(const char *path, char *const argv[], char *const envp[], int in_fd, int out_fd, int quiet,
                         int inherit_fd, int outlive_caller) {
    int report[2];
    if (pipe2(report, O_CLOEXEC) != 0) return -1;
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        int saved = errno;
        close(report[0]);
        close(report[1]);
        errno = saved;
        return -1;
    }
    if (pid == 0) {
        /* Only async-signal-safe calls: the parent may have other threads. */
        int err = 0;
        if (outlive_caller) {
            /* Its own session: a signal meant for the caller's process group
               (Ctrl-C) does not reach it, and a write to a pipe whose reader
               died fails with EPIPE instead of killing it. */
            struct sigaction ignore = {0};
            ignore.sa_handler = SIG_IGN;
            if (setsid() < 0 || sigaction(SIGPIPE, &ignore, NULL) != 0) err = errno;
        } else if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent) {
            _exit(127);
        }
        /* The inherited descriptor is moved out of the way of 0-4 first. */
        int kept = -1;
        if (!err && inherit_fd >= 0 && (kept = fcntl(inherit_fd, F_DUPFD_CLOEXEC, 10)) < 0) err = errno;
        if (!err && (dup2(in_fd, 0) < 0 || dup2(out_fd, 1) < 0)) err = errno;
        if (!err && quiet) {
            int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
            if (null < 0 || dup2(null, 2) < 0) err = errno;
        }
        int first_closed = 4;
        if (!err) {
            /* The report pipe is kept at 3, close-on-exec: it tells the parent
               whether execve worked. The inherited descriptor becomes 4. */
            int keep = report[1];
            if (keep != 3 && dup3(keep, 3, O_CLOEXEC) < 0) err = errno;
        }
        if (!err && kept >= 0) {
            if (dup2(kept, 4) < 0) err = errno;
            first_closed = 5;
        }
        if (!err) {
            close_range(first_closed, ~0U, 0);
            execve(path, argv, envp);
            err = errno;
        }
        ssize_t ignored = write(3, &err, sizeof err);
        (void)ignored;
        _exit(127);
    }
    close(report[1]);
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

int berth_descriptor_is_open(int fd) {
    return fcntl(fd, F_GETFD) >= 0 || errno != EBADF;
}

int berth_ignore_sigpipe(void) {
    struct sigaction ignore = {0};
    ignore.sa_handler = SIG_IGN;
    return sigaction(SIGPIPE, &ignore, NULL);
}
