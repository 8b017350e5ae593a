#ifndef BERTH_SYS_H
#define BERTH_SYS_H

#include <sys/types.h>

/// Moves the calling thread into the namespace behind `fd`.
/// `nstype` is 0 or one CLONE_NEW* flag. Returns 0, or -1 with errno set.
/// The corresponding C function is setns(2).
int berth_setns(int fd, int nstype);

/// The CLONE_NEWNET constant, which Swift's Glibc module does not export.
int berth_clone_newnet(void);

/// Tells what kind of namespace `fd` refers to.
/// Returns the CLONE_NEW* type of the namespace, 0 when `fd` is not a
/// namespace file at all (not on nsfs), or -1 with errno set.
/// Uses fstatfs(2) and ioctl(NS_GET_NSTYPE).
int berth_namespace_type(int fd);

/// Creates an anonymous memory file, close-on-exec. Returns fd or -1.
/// The corresponding C function is memfd_create(2).
int berth_memfd(const char *name);

/// Whether descriptor `fd` is open (fcntl F_GETFD does not fail with EBADF).
int berth_descriptor_is_open(int fd);

/// Ignores SIGPIPE in this process, so a write to a closed pipe fails with
/// EPIPE instead of killing it. The corresponding C function is sigaction(2).
int berth_ignore_sigpipe(void);

/// Creates a pipe whose two ends are close-on-exec. The corresponding C function is pipe2(2).
int berth_pipe_cloexec(int fds[2]);

/// Catches SIGINT, SIGTERM and SIGHUP: the process goes on, and
/// `berth_stop_signal` says which came (a long operation stops at its next
/// step and undoes what it made). The corresponding C function is sigaction(2).
int berth_catch_stop_signals(void);

/// The first stop signal caught since `berth_catch_stop_signals`, or 0.
int berth_stop_signal(void);

/// Puts SIGINT, SIGTERM and SIGHUP back to their default action.
void berth_default_stop_signals(void);

#endif
