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

/* Named network namespaces, as `ip netns add` makes them. */

int berth_netns_create(const char *path, int loopback_up) {
    int report[2];
    if (pipe2(report, O_CLOEXEC) != 0) return -1;
    pid_t pid = fork();
    if (pid < 0) { close(report[0]); close(report[1]); return -1; }
    if (pid == 0) {
        /* Nothing of the caller's stays open here but the report pipe (another
           thread's pipe held by this child would keep its reader waiting). */
        if (report[1] > 3) close_range(3, (unsigned)report[1] - 1, 0);
        close_range((unsigned)report[1] + 1, ~0U, 0);
        int err = 0;
        if (unshare(CLONE_NEWNET) != 0 || mount("/proc/self/ns/net", path, NULL, MS_BIND, NULL) != 0) err = errno;
        else if (loopback_up && launch_loopback_up() != 0) {
            err = errno;
            umount2(path, MNT_DETACH);
        }
        ssize_t ignored = write(report[1], &err, sizeof(err));
        (void)ignored;
        _exit(err ? 1 : 0);
    }
    close(report[1]);
    int err = 0;
    ssize_t n = read(report[0], &err, sizeof(err));
    close(report[0]);
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    if (n != sizeof(err)) { errno = ECHILD; return -1; }
    if (err) { errno = err; return -1; }
    return 0;
}
