#ifndef BERTH_LAUNCH_INTERNAL_H
#define BERTH_LAUNCH_INTERNAL_H

/* What the launch files share: the steps every child takes between fork
 * (or clone) and exec. Everything here is async-signal-safe: the caller
 * may have other threads. Not part of the module's interface. */

#include "berth_launch.h"
#include <signal.h>
#include <sys/types.h>

#define LAUNCH_HIDDEN __attribute__((visibility("hidden")))

/* Forks a child created in the cgroup2 cgroup of `cg` when it can; see child.c. */
LAUNCH_HIDDEN pid_t launch_fork_in(const struct berth_cgroups *cg, int flags, int *in_cgroup2);
/* Joins the v1 cgroups of `cg` (the calling thread). 0, or -1. */
LAUNCH_HIDDEN int launch_join_v1(const struct berth_cgroups *cg);
/* Joins the cgroup2 cgroup of `cg` unless created there. 0, or -1. */
LAUNCH_HIDDEN int launch_join_v2(const struct berth_cgroups *cg, int in_cgroup2);
/* Writes "errno:what" to `fd`. */
LAUNCH_HIDDEN void launch_report(int fd, int err, const char *what);
/* Every signal to its default action, the mask to `mask`. */
LAUNCH_HIDDEN void launch_reset_signals(const sigset_t *mask);
/* After a failed exec of `command`: one line on stderr, exit 127 or 126. */
LAUNCH_HIDDEN _Noreturn void launch_exec_failed(const char *command);
/* Reports `what` with errno on `fd` and exits 1. */
LAUNCH_HIDDEN _Noreturn void launch_fail(int fd, const char *what);
/* Forwards signals to `workload`, reaps children, exits with its status. */
LAUNCH_HIDDEN _Noreturn void launch_supervise(pid_t workload, const sigset_t *all);
/* Brings lo up in the current network namespace. 0, or -1. */
LAUNCH_HIDDEN int launch_loopback_up(void);
/* Drops every capability outside Docker's default set. 0, or -1. */
LAUNCH_HIDDEN int launch_drop_capabilities(void);

#endif
