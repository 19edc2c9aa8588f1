#define _GNU_SOURCE
#include "CVaultShims.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

_Static_assert(sizeof(cv_ucred) == sizeof(struct ucred), "cv_ucred must match struct ucred");

int cv_get_peer_credentials(int fd, cv_ucred *out) {
    struct ucred cred;
    socklen_t len = sizeof(cred);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
        return -1;
    }
    out->pid = cred.pid;
    out->uid = cred.uid;
    out->gid = cred.gid;
    return 0;
}

int cv_set_dumpable(int value) { return prctl(PR_SET_DUMPABLE, value, 0, 0, 0); }

int cv_get_dumpable(void) { return prctl(PR_GET_DUMPABLE, 0, 0, 0, 0); }

int cv_disable_core_dumps(void) {
    struct rlimit limit = {0, 0};
    return setrlimit(RLIMIT_CORE, &limit);
}

long long cv_core_limit(void) {
    struct rlimit limit;
    if (getrlimit(RLIMIT_CORE, &limit) != 0) {
        return -1;
    }
    return (long long)limit.rlim_cur;
}

int cv_pidfd_send_signal(int pidfd, int sig) { return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0); }

int cv_pidfd_open(int pid) { return (int)syscall(SYS_pidfd_open, pid, 0); }

int cv_peer_pidfd_supported(void) {
    int pair[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) {
        return -1;
    }
    int pidfd = -1;
    socklen_t len = sizeof(pidfd);
    int result = getsockopt(pair[0], SOL_SOCKET, CV_SO_PEERPIDFD, &pidfd, &len);
    int saved = errno;
    close(pair[0]);
    close(pair[1]);
    if (result == 0) {
        close(pidfd);
        return 1;
    }
    if (saved == ENOPROTOOPT || saved == EINVAL) {
        return 0;
    }
    errno = saved;
    return -1;
}

int cv_open_directory(const char *path) { return open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC); }

int cv_openat_read(int dirfd, const char *name) { return openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW); }

int cv_raise_nofile_limit(long long *soft, long long *hard) {
    struct rlimit limit;
    if (getrlimit(RLIMIT_NOFILE, &limit) != 0) {
        return -1;
    }
    int result = 0;
    if (limit.rlim_cur != limit.rlim_max) {
        struct rlimit raised = {limit.rlim_max, limit.rlim_max};
        if (setrlimit(RLIMIT_NOFILE, &raised) == 0) {
            limit = raised;
        } else {
            result = -1;
        }
    }
    *soft = limit.rlim_cur == RLIM_INFINITY ? -1 : (long long)limit.rlim_cur;
    *hard = limit.rlim_max == RLIM_INFINITY ? -1 : (long long)limit.rlim_max;
    return result;
}
