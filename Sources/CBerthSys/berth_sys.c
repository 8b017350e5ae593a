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

int berth_descriptor_is_open(int fd) {
    return fcntl(fd, F_GETFD) >= 0 || errno != EBADF;
}

int berth_ignore_sigpipe(void) {
    struct sigaction ignore = {0};
    ignore.sa_handler = SIG_IGN;
    return sigaction(SIGPIPE, &ignore, NULL);
}

static volatile sig_atomic_t stop_signal = 0;

static void note_stop_signal(int sig) {
    if (stop_signal == 0) stop_signal = sig;
}

int berth_catch_stop_signals(void) {
    struct sigaction catch = {0};
    catch.sa_handler = note_stop_signal;
    catch.sa_flags = SA_RESTART;
    sigemptyset(&catch.sa_mask);
    int signals[] = {SIGINT, SIGTERM, SIGHUP};
    for (unsigned i = 0; i < sizeof(signals) / sizeof(signals[0]); i++) {
        if (sigaction(signals[i], &catch, NULL) != 0) return -1;
    }
    /* A parent may have started this process with them blocked. */
    sigset_t set;
    sigemptyset(&set);
    for (unsigned i = 0; i < sizeof(signals) / sizeof(signals[0]); i++) sigaddset(&set, signals[i]);
    return sigprocmask(SIG_UNBLOCK, &set, NULL);
}

int berth_stop_signal(void) { return stop_signal; }

void berth_default_stop_signals(void) {
    struct sigaction dfl = {0};
    dfl.sa_handler = SIG_DFL;
    sigaction(SIGINT, &dfl, NULL);
    sigaction(SIGTERM, &dfl, NULL);
    sigaction(SIGHUP, &dfl, NULL);
}
