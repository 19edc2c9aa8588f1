#ifndef CVAULTSHIMS_H
#define CVAULTSHIMS_H

// Small wrappers around Linux calls that Swift cannot import directly: variadic functions
// (prctl) and structs that Glibc only declares under _GNU_SOURCE (struct ucred).

#include <stdint.h>
#include <sys/types.h>

/// Peer credentials of a Unix socket, laid out exactly as Linux's `struct ucred`.
typedef struct {
    int32_t pid;
    uint32_t uid;
    uint32_t gid;
} cv_ucred;

/// Reads SO_PEERCRED of a connected Unix socket. Returns 0 on success, -1 with errno set.
int cv_get_peer_credentials(int fd, cv_ucred *out);

/// prctl(PR_SET_DUMPABLE, value): 0 forbids core dumps and ptrace attach by other uids.
int cv_set_dumpable(int value);

/// prctl(PR_GET_DUMPABLE).
int cv_get_dumpable(void);

/// Disables core files for this process: RLIMIT_CORE = 0 (soft and hard).
int cv_disable_core_dumps(void);

/// Reads the current soft RLIMIT_CORE, or -1 on error.
long long cv_core_limit(void);

/// The socket option numbers Glibc's headers may not have yet (Linux values, the same on every architecture).
#define CV_SO_PEERGROUPS 59
#define CV_SO_PEERPIDFD 77

/// pidfd_send_signal(pidfd, sig, NULL, 0). Returns 0 on success, -1 with errno set (ESRCH: the process is gone).
int cv_pidfd_send_signal(int pidfd, int sig);

/// pidfd_open(pid, 0). Returns the pidfd, or -1 with errno set.
int cv_pidfd_open(int pid);

/// Whether getsockopt(SO_PEERPIDFD) works on this kernel, tried on a fresh socketpair: 1 yes, 0 no (ENOPROTOOPT on
/// kernels before 6.5), -1 when the probe itself failed (errno set).
int cv_peer_pidfd_supported(void);

/// open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC).
int cv_open_directory(const char *path);

/// openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW).
int cv_openat_read(int dirfd, const char *name);

/// Raises the soft RLIMIT_NOFILE to the hard limit and reports both afterwards. Returns 0, or -1 with errno set
/// (the limits are reported as they are when only raising failed).
int cv_raise_nofile_limit(long long *soft, long long *hard);

#endif
