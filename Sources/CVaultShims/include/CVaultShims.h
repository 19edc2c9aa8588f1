#ifndef CVAULTSHIMS_H
#define CVAULTSHIMS_H

// Small wrappers around Linux calls that Swift cannot import directly: variadic functions
// (prctl) and structs that Glibc only declares under _GNU_SOURCE (struct ucred).

#include <grp.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>

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

/// fstatfs(fd)'s f_type (the file system's magic number), or -1 with errno set.
long long cv_fstatfs_type(int fd);

/// open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC).
int cv_open_directory(const char *path);

/// openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW).
int cv_openat_read(int dirfd, const char *name);

/// Raises the soft RLIMIT_NOFILE to the hard limit and reports both afterwards. Returns 0, or -1 with errno set
/// (the limits are reported as they are when only raising failed).
int cv_raise_nofile_limit(long long *soft, long long *hard);

// MARK: - Each written once (DESIGN §2): addresses, peer groups, zeroing, group look-ups

/// Fills `address` for `path` and sets `*length` to the length to pass to bind/connect/sendto.
///
/// A path starting with '@' names an abstract socket: the '@' becomes the leading NUL and the name is exactly as
/// long as given (up to 107 bytes after the '@'). Any other path gets its terminating NUL and may be at most 107
/// bytes long (`sun_path` holds 108). Returns 0, or -1 with errno EINVAL (empty path or a bare '@') or
/// ENAMETOOLONG; `address` is zeroed either way.
int cv_sockaddr_un_set(struct sockaddr_un *address, const char *path, socklen_t *length);

/// explicit_bzero(pointer, count): stores the compiler may not drop, for memory that held a secret.
void cv_zero(void *pointer, size_t count);

/// getsockopt(SO_PEERGROUPS) into `out`, which holds `capacity` gids. Returns 0 with `*count` set to the exact
/// number of groups the kernel wrote; or -1 with errno set: ERANGE when `capacity` is too small, with `*count` set to
/// the number the kernel reports it needs (call again with at least that many); anything else leaves `*count` 0.
int cv_get_peer_groups(int fd, gid_t *out, int capacity, int *count);

/// A group from getgrnam_r/getgrgid_r, copied out of the look-up buffer into storage of its own.
typedef struct {
    gid_t gid;
    /// The group's name (NUL-terminated).
    const char *name;
    /// Its listed members (`gr_mem`): `member_count` NUL-terminated names.
    const char *const *members;
    size_t member_count;
    /// How many look-ups it took: each ERANGE doubles the buffer and tries again.
    int attempts;
    /// Owned; released by cv_group_entry_free.
    void *storage;
} cv_group_entry;

/// Looks up group `name`. `initial_buffer` is the first buffer size (0: sysconf(_SC_GETGR_R_SIZE_MAX), at least
/// 1024); each ERANGE doubles it, up to 16 MiB. Returns 0 with `*out` filled (free it with cv_group_entry_free), 1 when
/// there is no such group, or -1 with errno set when the group database cannot be read.
int cv_group_by_name(const char *name, size_t initial_buffer, cv_group_entry *out);

/// Looks up group `gid`; as cv_group_by_name.
int cv_group_by_gid(gid_t gid, size_t initial_buffer, cv_group_entry *out);

/// Releases what a successful look-up stored in `entry` and clears it.
void cv_group_entry_free(cv_group_entry *entry);

/// The gid of group `name`: cv_group_by_name without keeping the entry. Returns 0 with `*gid` set, 1 when there is
/// no such group, -1 with errno set on failure.
int cv_group_gid(const char *name, gid_t *gid);

/// malloc_trim(0): gives the free pages of every malloc arena back to the kernel (glibc keeps them otherwise, so one
/// large answer, a `list` of 100,000 connections, would leave the daemon's resident set at its peak for good).
/// Returns 1 when memory was released, 0 when there was none to release.
int cv_release_free_memory(void);

#endif
