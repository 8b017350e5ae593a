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

/// Starts `path` as a plugin: stdin from `in_fd`, stdout to `out_fd`, stderr
/// inherited or, with `quiet`, /dev/null; no other descriptor; killed
/// (SIGKILL) if the calling thread dies first, so a runtime killed in the
/// middle of an ADD leaves no plugin finishing that ADD after the runtime's
/// DEL. Returns the pid, or -1 with errno set (also when execve failed).
/// Uses fork(2), prctl(PR_SET_PDEATHSIG), close_range(2), execve(2).
pid_t berth_spawn_plugin(const char *path, char *const argv[], char *const envp[], int in_fd, int out_fd, int quiet);

/// Creates a pipe whose two ends are close-on-exec. The corresponding C function is pipe2(2).
int berth_pipe_cloexec(int fds[2]);

#endif
