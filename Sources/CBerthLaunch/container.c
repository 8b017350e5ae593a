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

/* A container's first process (clone into new namespaces, its init, its
 * root file system, lxcfs, capabilities). A command run inside a running
 * container starts through berth_spawn (`enter_pid`). */

/* Everything below runs in the cloned child, which may have been cloned from
 * a multi-threaded process: only async-signal-safe calls until execve. */

struct child_args {
    const struct berth_container_spec *spec;
    int go_read;
    int go_write;
    int status_read;
    int status_write;
    int in_cgroup2;
};

/* Makes this process show as `argv` in ps and /proc/PID/cmdline: the
 * command line's memory is overwritten with the arguments (cut to fit),
 * the rest zeroed, and the thread's name set to the command's base name. */
static void set_title(const struct berth_container_spec *spec) {
    if (!spec->title || spec->title_size < 2) return;
    size_t n = 0;
    for (char *const *a = spec->argv; *a && n < spec->title_size - 1; a++) {
        for (const char *p = *a; *p && n < spec->title_size - 1; p++) spec->title[n++] = *p;
        spec->title[n++] = 0;
    }
    memset(spec->title + n, 0, spec->title_size - n);
    const char *base = strrchr(spec->argv[0], '/');
    prctl(PR_SET_NAME, base ? base + 1 : spec->argv[0], 0, 0, 0);
}

/* PID 1 of the container: runs the workload as its child, forwards every
 * signal it can catch to it, reaps every orphan, and exits with the
 * workload's status (which makes the kernel kill whatever is left). */
static _Noreturn void run_init(const struct berth_container_spec *spec, int status_fd) {
    sigset_t all, old;
    sigfillset(&all);
    sigprocmask(SIG_BLOCK, &all, &old);
    pid_t workload = fork();
    if (workload < 0) launch_fail(status_fd, "fork the workload");
    if (workload == 0) {
        sigset_t none;
        sigemptyset(&none);
        launch_reset_signals(&none);
        setsid();
        execvpe(spec->argv[0], spec->argv, spec->envp);
        launch_fail(status_fd, "execute the workload");
    }
    close(status_fd);
    set_title(spec);
    launch_supervise(workload, &all);
}


/* Docker's default capability set. */
static const int default_caps[] = {
    CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_FSETID, CAP_FOWNER, CAP_MKNOD, CAP_NET_RAW, CAP_SETGID, CAP_SETUID,
    CAP_SETFCAP, CAP_SETPCAP, CAP_NET_BIND_SERVICE, CAP_SYS_CHROOT, CAP_KILL, CAP_AUDIT_WRITE,
};

static unsigned long long default_capabilities(void) {
    unsigned long long mask = 0;
    for (size_t i = 0; i < sizeof(default_caps) / sizeof(default_caps[0]); i++) mask |= 1ULL << default_caps[i];
    return mask;
}

/* Drops every capability outside the default set from the bounding set and
 * from the effective, permitted and inheritable sets. */
int launch_drop_capabilities(void) {
    unsigned long long keep = default_capabilities();
    for (int cap = 0; cap <= 63; cap++) {
        if (keep & (1ULL << cap)) continue;
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno != EINVAL) return -1;
    }
    struct __user_cap_header_struct header = { _LINUX_CAPABILITY_VERSION_3, 0 };
    struct __user_cap_data_struct data[2];
    memset(data, 0, sizeof(data));
    data[0].effective = data[0].permitted = data[0].inheritable = (unsigned)(keep & 0xffffffffULL);
    data[1].effective = data[1].permitted = data[1].inheritable = (unsigned)(keep >> 32);
    return (int)syscall(SYS_capset, &header, data);
}

/* Joins `a` and `b` into `out` (no allocation, no locks: safe after clone). */
static const char *join(char *out, size_t size, const char *a, const char *b) {
    size_t n = 0;
    for (const char *p = a; *p && n < size - 1; p++) out[n++] = *p;
    for (const char *p = b; *p && n < size - 1; p++) out[n++] = *p;
    out[n] = 0;
    return out;
}

/* Mounts the container's own root: the rootfs bound onto itself, a fresh
 * /proc, a minimal /dev (tmpfs with the usual nodes bound from the host's,
 * devpts, shm), a fresh read-only /sys; then pivot_root into it and drop
 * the old root. Returns NULL, or the step that failed (errno set). */
static const char *bind_lxcfs(const char *root);

static const char *enter_rootfs(const char *rootfs, int lxcfs) {
    char path[4096];
    if (mount(rootfs, rootfs, NULL, MS_BIND | MS_REC, NULL) != 0) return "bind-mount the root file system";
    mkdir(join(path, sizeof(path), rootfs, "/proc"), 0555);
    if (mount("proc", path, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) != 0) return "mount /proc in the root file system";
    mkdir(join(path, sizeof(path), rootfs, "/dev"), 0755);
    if (mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_STRICTATIME, "mode=755,size=65536k") != 0) return "mount /dev";
    static const char *nodes[] = { "/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty" };
    for (size_t i = 0; i < sizeof(nodes) / sizeof(nodes[0]); i++) {
        join(path, sizeof(path), rootfs, nodes[i]);
        int created = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0666);
        if (created >= 0) close(created);
        if (mount(nodes[i], path, NULL, MS_BIND, NULL) != 0) return "bind a device node into /dev";
    }
    mkdir(join(path, sizeof(path), rootfs, "/dev/pts"), 0755);
    if (mount("devpts", path, "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620") != 0) return "mount /dev/pts";
    if (symlink("pts/ptmx", join(path, sizeof(path), rootfs, "/dev/ptmx")) != 0) return "link /dev/ptmx";
    mkdir(join(path, sizeof(path), rootfs, "/dev/shm"), 01777);
    if (mount("shm", path, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=1777,size=65536k") != 0) return "mount /dev/shm";
    mkdir(join(path, sizeof(path), rootfs, "/sys"), 0555);
    if (mount("sysfs", path, "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) != 0) return "mount /sys read-only";
    /* lxcfs's files are reachable only before the old root goes. */
    const char *failed;
    if (lxcfs && (failed = bind_lxcfs(rootfs))) return failed;
    if (chdir(rootfs) != 0) return "enter the root file system";
    if (syscall(SYS_pivot_root, ".", ".") != 0) return "pivot_root";
    if (umount2(".", MNT_DETACH) != 0) return "detach the old root";
    if (chdir("/") != 0) return "change to /";
    return NULL;
}

#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442
#endif
#ifndef MOUNT_ATTR_RDONLY
#define MOUNT_ATTR_RDONLY 0x00000001
struct mount_attr { unsigned long long attr_set, attr_clr, propagation, userns_fd; };
#endif
#ifndef AT_RECURSIVE
#define AT_RECURSIVE 0x8000
#endif

/* Without a root file system of its own the container sees the host's /sys,
 * cgroup hierarchies included: read-write, its root (which keeps
 * CAP_DAC_OVERRIDE) could move itself out of its cgroup by writing a parent's
 * cgroup.procs. /sys and every mount under it become read-only (in the
 * container's private mount namespace only). */
static int make_sys_read_only(void) {
    struct mount_attr attr = { .attr_set = MOUNT_ATTR_RDONLY };
    if (syscall(SYS_mount_setattr, AT_FDCWD, "/sys", AT_RECURSIVE, &attr, sizeof attr) == 0) return 0;
    if (errno != ENOSYS) return -1;
    /* Kernels before 5.12: remount each mount under /sys, read from mountinfo. */
    static char info[256 * 1024];
    int mfd = open("/proc/self/mountinfo", O_RDONLY | O_CLOEXEC);
    if (mfd < 0) return -1;
    size_t len = 0;
    ssize_t n;
    while (len < sizeof info - 1 && (n = read(mfd, info + len, sizeof info - 1 - len)) > 0) len += (size_t)n;
    close(mfd);
    info[len] = 0;
    for (char *line = info; line && *line; ) {
        char *next = strchr(line, '\n');
        if (next) *next++ = 0;
        /* Field 5 is the mount point. */
        char *field = line;
        for (int i = 0; i < 4 && field; i++) { field = strchr(field, ' '); if (field) field++; }
        if (field) {
            char *end = strchr(field, ' ');
            if (end) *end = 0;
            if (strncmp(field, "/sys", 4) == 0 && (field[4] == 0 || field[4] == '/')) {
                if (mount(NULL, field, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY, NULL) != 0) return -1;
            }
        }
        line = next;
    }
    return 0;
}

/* lxcfs serves cgroup-aware copies of /proc files: bind them over the
 * container's /proc (under `root`: the root file system before pivot_root,
 * while /var/lib/lxcfs can still be reached, or "" for the host's root).
 * Every file lxcfs always serves must be there (loadavg only with its -l).
 * Returns NULL, or the step that failed (errno set). */
static const char *bind_lxcfs(const char *root) {
    static const struct { const char *name; int required; } files[] = {
        { "meminfo", 1 }, { "cpuinfo", 1 }, { "stat", 1 }, { "uptime", 1 }, { "diskstats", 1 }, { "swaps", 1 }, { "loadavg", 0 },
    };
    char from[256], to[4096], path[4096];
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        join(from, sizeof(from), "/var/lib/lxcfs/proc/", files[i].name);
        join(path, sizeof(path), root, "/proc/");
        join(to, sizeof(to), path, files[i].name);
        if (access(from, R_OK) != 0) {
            if (!files[i].required) continue;
            errno = ENOENT;
            return "find lxcfs's /proc files under /var/lib/lxcfs (is lxcfs running?)";
        }
        if (mount(from, to, NULL, MS_BIND, NULL) != 0) return "bind an lxcfs /proc file";
    }
    static const char *online = "/var/lib/lxcfs/sys/devices/system/cpu/online";
    join(to, sizeof(to), root, "/sys/devices/system/cpu/online");
    if (access(online, R_OK) == 0 && access(to, F_OK) == 0 && mount(online, to, NULL, MS_BIND, NULL) != 0) {
        return "bind lxcfs's cpu/online";
    }
    return NULL;
}

static int child_main(void *arg) {
    struct child_args *a = arg;
    const struct berth_container_spec *spec = a->spec;
    int fd = a->status_write;

    /* The parent's ends, copied by clone: closed, so that a parent killed
       before it says "go" gives us end-of-file instead of a wait forever. */
    close(a->go_write);
    close(a->status_read);
    /* Into the cgroups (with a user namespace the caller moves it: the child
       may not write to the host's cgroup files before its maps exist). */
    if (!spec->user_ns && (launch_join_v1(&spec->cgroups) != 0 || launch_join_v2(&spec->cgroups, a->in_cgroup2) != 0)) {
        launch_fail(fd, "join the container's cgroup");
    }
    /* Wait until the parent has put us into our cgroup and wired the network. */
    char go;
    ssize_t n;
    do { n = read(a->go_read, &go, 1); } while (n < 0 && errno == EINTR);
    if (n != 1) _exit(126);
    close(a->go_read);
    /* Nothing the caller had open reaches the container but stdio and the status pipe. */
    if (fd > 3) close_range(3, (unsigned)fd - 1, 0);
    close_range((unsigned)fd + 1, ~0U, 0);

    if (spec->user_ns) {
        /* The maps are written: become the namespace's root (host uid 100000). */
        if (setgroups(0, NULL) != 0) launch_fail(fd, "drop supplementary groups");
        if (setresgid(0, 0, 0) != 0) launch_fail(fd, "become gid 0 in the user namespace");
        if (setresuid(0, 0, 0) != 0) launch_fail(fd, "become uid 0 in the user namespace");
    }
    if (unshare(CLONE_NEWCGROUP) != 0) launch_fail(fd, "create the cgroup namespace");
    if (spec->hostname && sethostname(spec->hostname, strlen(spec->hostname)) != 0) launch_fail(fd, "set the host name");
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) launch_fail(fd, "make mounts private");
    const char *failed;
    if (spec->resolv_conf && access(spec->resolv_conf, R_OK) == 0) {
        /* Before the root moves: bound over the file of the root the container gets (a private mount). */
        char target[4096];
        join(target, sizeof target, spec->rootfs ? spec->rootfs : "", "/etc/resolv.conf");
        if (access(target, F_OK) == 0 && mount(spec->resolv_conf, target, NULL, MS_BIND, NULL) != 0) {
            launch_fail(fd, "bind-mount the networks' resolv.conf");
        }
    }
    if (spec->rootfs) {
        if ((failed = enter_rootfs(spec->rootfs, spec->lxcfs))) launch_fail(fd, failed);
    } else {
        if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) != 0) launch_fail(fd, "mount /proc");
        if (spec->lxcfs && (failed = bind_lxcfs(""))) launch_fail(fd, failed);
    }
    if (!spec->rootfs && make_sys_read_only() != 0) launch_fail(fd, "make /sys read-only");
    if (launch_loopback_up() != 0) launch_fail(fd, "bring up the loopback interface");
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) launch_fail(fd, "set no_new_privs");
    if (launch_drop_capabilities() != 0) launch_fail(fd, "drop capabilities");
    if (chdir("/") != 0) launch_fail(fd, "change to /");

    if (spec->use_init) run_init(spec, fd);
    sigset_t none;
    sigemptyset(&none);
    launch_reset_signals(&none);
    execvpe(spec->argv[0], spec->argv, spec->envp);
    launch_fail(fd, "execute the workload");
}

int berth_container_start(const struct berth_container_spec *spec, struct berth_container_handle *out) {
    int go[2], status[2];
    if (pipe2(go, O_CLOEXEC) != 0) return -1;
    if (pipe2(status, O_CLOEXEC) != 0) {
        close(go[0]);
        close(go[1]);
        return -1;
    }
    const size_t stack_size = 256 * 1024;
    void *stack = mmap(NULL, stack_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (stack == MAP_FAILED) {
        close(go[0]); close(go[1]); close(status[0]); close(status[1]);
        return -1;
    }
    struct child_args args = { spec, go[0], go[1], status[0], status[1], 0 };
    int flags = CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET | SIGCHLD;
    if (spec->user_ns) flags |= CLONE_NEWUSER;
    /* Without CLONE_VM the child has its own copy of memory, `args` included. */
    pid_t pid = -1;
    if (spec->cgroups.cgroup2_fd >= 0) {
        pid = launch_fork_in(&spec->cgroups, flags & ~CSIGNAL, &args.in_cgroup2);
        if (pid == 0) {
            child_main(&args);
            _exit(127);
        }
    }
    if (pid < 0) pid = clone(child_main, (char *)stack + stack_size, flags, &args);
    int saved = errno;
    munmap(stack, stack_size);
    close(go[0]);
    close(status[1]);
    if (pid < 0) {
        close(go[1]);
        close(status[0]);
        errno = saved;
        return -1;
    }
    out->pid = pid;
    out->go_fd = go[1];
    out->status_fd = status[0];
    return 0;
}
