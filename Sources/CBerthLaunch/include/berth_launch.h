#ifndef BERTH_LAUNCH_H
#define BERTH_LAUNCH_H

/* What runs in a child process between fork or clone and execve: starting
 * containers, entering them, plugins, detached monitors, `ip netns`-style
 * commands. Kept in C, as runc keeps nsexec: after clone in a multi-threaded
 * process only async-signal-safe calls are allowed, so no Swift runs there. */

#include <sys/types.h>

/// Where a new process goes in the cgroup hierarchies, without the wait a
/// move of another process makes (the cgroup lock's RCU grace period, 10-20
/// ms when no move happened lately): it joins the v1 cgroups itself, writing
/// "0" to their `tasks` files (a thread moving only itself takes no global
/// lock), and is created in the cgroup2 one (clone3 with CLONE_INTO_CGROUP;
/// where the kernel refuses, it writes "0" to its `cgroup.procs`).
struct berth_cgroups {
    /// The v1 cgroups' `tasks` files.
    const char *const *tasks;
    int tasks_count;
    /// The cgroup2 directory, open, or -1.
    int cgroup2_fd;
};

/// What the container's first process does between clone and exec.
/// Everything here runs in C in the child: no Swift runs after clone.
struct berth_container_spec {
    /// The workload: argv[0] is looked up on PATH of `envp`. NULL-terminated.
    char *const *argv;
    /// The workload's environment. NULL-terminated.
    char *const *envp;
    /// Host name inside the new UTS namespace (NULL keeps it).
    const char *hostname;
    /// 1: also a new user namespace (the caller writes its uid and gid maps
    /// before letting the child go on).
    int user_ns;
    /// 1: a small init is PID 1 (reaps orphans, forwards signals, exits with
    /// the workload's status). 0: the workload itself is PID 1.
    int use_init;
    /// A root file system to pivot_root into (NULL: keep the host's root,
    /// with private mount propagation and a fresh /proc).
    const char *rootfs;
    /// Bind-mount lxcfs's /proc files (and cpu online) over the container's.
    int lxcfs;
    /// Its cgroups: the child joins them itself before it waits (with
    /// user_ns the caller moves it instead: the child may not write to the
    /// host's cgroup files before its maps exist).
    struct berth_cgroups cgroups;
    /// The memory holding this process's command line (its argv strings,
    /// end to end) and its size: init writes the workload's command there,
    /// so that `ps` shows the workload, not the runtime. NULL: left as is.
    char *title;
    size_t title_size;
};

/// A started container: its first process, and the descriptors the caller
/// uses to finish setting it up.
struct berth_container_handle {
    /// The container's PID 1, as seen from the caller's PID namespace.
    pid_t pid;
    /// Write one byte to let the child go on (after writing its user maps and
    /// wiring its network); close it to make the child exit.
    int go_fd;
    /// Read end: reaches end of file once the workload has been exec'd;
    /// carries "errno:message" if the child failed before that.
    int status_fd;
};

/// Clones the container's first process into new pid, mount, uts, ipc and
/// net namespaces. The child waits on `go_fd` before going on; then it takes
/// a new cgroup namespace (so its cgroup, joined before it waited, is
/// its root), sets the host name, makes every mount private, mounts a fresh
/// /proc, sets no_new_privs, and executes the workload (under the init when
/// `use_init`). Returns 0, or -1 with errno set.
int berth_container_start(const struct berth_container_spec *spec, struct berth_container_handle *out);

/// Runs `argv` inside the container whose PID 1 is `target`: the process
/// first joins `cgroups` (so it counts against the container's limits; the
/// command runs in all of them, its supervisor in the v1 ones), then the
/// container's cgroup, ipc, uts,
/// net, pid and mount namespaces, and is executed as a child of a small
/// supervisor that forwards signals. Only stdin, stdout and stderr of the
/// caller's descriptors reach it. Returns the wait status of that
/// supervisor (the command's status), or -1 with errno.
int berth_exec_in(pid_t target, const struct berth_cgroups *cgroups, char *const *argv, char *const *envp);

/// Decodes a wait status: the exit code, or 128+N for a process killed by signal N.
int berth_exit_code(int wait_status);

/// Waits for child `pid` to exit while forwarding SIGINT, SIGTERM, SIGHUP,
/// SIGQUIT, SIGUSR1 and SIGUSR2 received by the caller to it. Returns the
/// wait status, or -1 with errno. Call with no other thread expecting those signals.
int berth_wait_forwarding(pid_t pid);

/// Starts `path` in a new session, stdin from /dev/null, with `keep_fd`
/// placed at descriptor 3 and every other descriptor but 1 and 2 closed.
/// Returns its pid, or -1 with errno.
pid_t berth_spawn_detached(const char *path, char *const *argv, char *const *envp, int keep_fd);

/// Creates a network namespace and binds it onto the existing file `path`
/// (as `ip netns add` does), from a forked single-threaded child.
/// Returns 0, or -1 with errno.
int berth_netns_create(const char *path, int loopback_up);

/// Runs `argv` in the network namespace at `path` (as `ip netns exec`),
/// first joining `cgroups` (NULL: none), and
/// returns its wait status, or -1 with errno (125: joining a cgroup failed,
/// 126: entering the namespace failed). With `out_fd` >= 0 its stdout and
/// stderr go there; no other descriptor of the caller's but stdin reaches
/// it. With `detach` it runs in a session of its own, stdin from
/// /dev/null, and the call returns its pid at once.
int berth_netns_exec(const char *path, const struct berth_cgroups *cgroups,
                     char *const *argv, char *const *envp, int out_fd, int detach);

/// Starts `path` as a plugin: stdin from `in_fd`, stdout to `out_fd`, stderr
/// inherited or, with `quiet`, /dev/null; `inherit_fd` (unless -1) as
/// descriptor 4; no other descriptor.
/// Without `outlive_caller` it is killed (SIGKILL) if the calling thread dies
/// first, so a runtime killed in the middle of an ADD leaves no plugin
/// finishing that ADD after the runtime's DEL. With `outlive_caller` it runs
/// to its end in a session of its own, ignoring SIGPIPE: a delegated IPAM
/// plugin must never stop half-way because its caller was killed (it holds
/// the attachment's lock through `inherit_fd` until it is done).
/// Returns the pid, or -1 with errno set (also when execve failed).
/// Uses fork(2), prctl(PR_SET_PDEATHSIG), setsid(2), close_range(2), execve(2).
pid_t berth_spawn_plugin(const char *path, char *const argv[], char *const envp[], int in_fd, int out_fd, int quiet,
                         int inherit_fd, int outlive_caller);

#endif
