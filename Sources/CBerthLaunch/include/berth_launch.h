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
    /// A resolv.conf the caller may write before letting the child go on
    /// (its networks' DNS servers): when it exists then, it is bind-mounted
    /// over the container's /etc/resolv.conf (NULL: none).
    const char *resolv_conf;
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

/// Decodes a wait status: the exit code, or 128+N for a process killed by signal N.
int berth_exit_code(int wait_status);

/// Waits for child `pid` to exit while forwarding SIGINT, SIGTERM, SIGHUP,
/// SIGQUIT, SIGUSR1 and SIGUSR2 received by the caller to it. Returns the
/// wait status, or -1 with errno. Call with no other thread expecting those signals.
int berth_wait_forwarding(pid_t pid);

/// Creates a network namespace and binds it onto the existing file `path`
/// (as `ip netns add` does), from a forked single-threaded child.
/// Returns 0, or -1 with errno.
int berth_netns_create(const char *path, int loopback_up);

/// A descriptor of the caller's for `berth_spawn`'s stdin, stdout or stderr,
/// or one of these.
#define BERTH_FD_INHERIT (-1)  /* the caller's own */
#define BERTH_FD_NULL (-2)     /* /dev/null */

/// A process to start, described once: what it runs, where it runs
/// (cgroups, a network namespace), which descriptors it gets, and how it
/// relates to its caller. Every process Berth starts but a container's
/// first process (`berth_container_start`, which makes the namespaces) goes
/// through `berth_spawn`: plugins, the container's detached monitor,
/// commands in named network namespaces (`ip netns exec`), commands in a
/// running container (`berthctl exec`).
struct berth_spawn {
    /// The executable; NULL: argv[0] is looked up on the PATH of `envp`.
    const char *path;
    /// NULL-terminated.
    char *const *argv;
    char *const *envp;
    /// Joined before anything else (NULL: the caller's).
    const struct berth_cgroups *cgroups;
    /// A network namespace file to enter (NULL: the caller's namespace).
    const char *netns;
    /// A running container's PID 1 (0: none): the process joins its cgroup,
    /// ipc, uts, net, pid and mount namespaces (after `cgroups`), and runs
    /// as the child of a small supervisor that forwards signals and exits
    /// with its status (a pid namespace applies to children only); in the
    /// container at /, with no_new_privs and Docker's default capabilities.
    pid_t enter_pid;
    /// A descriptor, BERTH_FD_INHERIT or BERTH_FD_NULL each.
    int stdin_fd, stdout_fd, stderr_fd;
    /// A descriptor of the caller's the process gets as `pass_at` (3 or
    /// 4), or -1. No other descriptor but stdio reaches it.
    int pass_fd, pass_at;
    /// 1: a session of its own (a signal to the caller's process group,
    /// Ctrl-C, does not reach it).
    int new_session;
    /// 1: SIGPIPE ignored (a write to a dead reader fails with EPIPE).
    int ignore_sigpipe;
    /// 1: killed (SIGKILL) when the calling thread dies first.
    int die_with_caller;
    /// 1: every signal at its default action and none blocked (what the
    /// caller ignored would survive execve).
    int reset_signals;
    /// 1: a failure to set the process up or to execute it makes
    /// `berth_spawn` return -1 with its errno. 0: the process exits 125
    /// when its setup fails, and 127 or 126 with one line on stderr when
    /// its command cannot be executed, as a shell does.
    int report_exec;
    /// As `ip netns exec` does for a named namespace: when this directory
    /// (/etc/netns/NAME) exists, the process gets a mount namespace of its
    /// own in which each file there is bind-mounted over the same name in
    /// /etc (resolv.conf, hosts). NULL: none.
    const char *etc_overlay;
};

/// Starts `spawn`. Returns its pid, or -1 with errno set.
/// Uses fork(2) or clone3(2) into the cgroup2 cgroup, prctl(PR_SET_PDEATHSIG),
/// setns(2), setsid(2), close_range(2), execve(2).
pid_t berth_spawn(const struct berth_spawn *spawn);

#endif
