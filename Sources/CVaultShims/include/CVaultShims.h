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

#endif
