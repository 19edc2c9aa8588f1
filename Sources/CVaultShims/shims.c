#define _GNU_SOURCE
#include "CVaultShims.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <malloc.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/un.h>
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

long long cv_fstatfs_type(int fd) {
    struct statfs info;
    if (fstatfs(fd, &info) != 0) {
        return -1;
    }
    return (long long)info.f_type;
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

// MARK: - Each written once

int cv_sockaddr_un_set(struct sockaddr_un *address, const char *path, socklen_t *length) {
    memset(address, 0, sizeof(*address));
    address->sun_family = AF_UNIX;
    *length = 0;
    size_t count = strnlen(path, sizeof(address->sun_path) + 1);
    int abstract = path[0] == '@';
    if (count == 0 || (abstract && count == 1)) {
        errno = EINVAL;
        return -1;
    }
    // A path needs room for its NUL; an abstract name's '@' becomes the leading NUL and it has no terminator.
    if (abstract ? count > sizeof(address->sun_path) : count >= sizeof(address->sun_path)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(address->sun_path, path, count);
    if (abstract) {
        address->sun_path[0] = '\0';
    }
    *length = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + count + (abstract ? 0 : 1));
    return 0;
}

void cv_zero(void *pointer, size_t count) {
    if (pointer != NULL && count > 0) {
        explicit_bzero(pointer, count);
    }
}

int cv_get_peer_groups(int fd, gid_t *out, int capacity, int *count) {
    *count = 0;
    if (capacity < 0) {
        errno = EINVAL;
        return -1;
    }
    socklen_t length = (socklen_t)((size_t)capacity * sizeof(gid_t));
    if (getsockopt(fd, SOL_SOCKET, CV_SO_PEERGROUPS, out, &length) != 0) {
        if (errno == ERANGE) {
            // The kernel wrote the length it needs.
            *count = (int)(length / sizeof(gid_t));
        }
        return -1;
    }
    *count = (int)(length / sizeof(gid_t));
    return 0;
}

enum { CV_GROUP_BUFFER_LIMIT = 16 * 1024 * 1024 };

static size_t cv_group_initial_buffer(size_t requested) {
    if (requested > 0) {
        return requested;
    }
    long suggested = sysconf(_SC_GETGR_R_SIZE_MAX);
    return suggested > 1024 ? (size_t)suggested : 1024;
}

/// Copies `group` into one allocation: the member pointer array, then the strings.
static int cv_group_copy(const struct group *group, int attempts, cv_group_entry *out) {
    size_t members = 0;
    size_t bytes = strlen(group->gr_name) + 1;
    for (char **member = group->gr_mem; member != NULL && *member != NULL; member++) {
        members++;
        bytes += strlen(*member) + 1;
    }
    size_t pointers = (members + 1) * sizeof(char *);
    char *storage = malloc(pointers + bytes);
    if (storage == NULL) {
        errno = ENOMEM;
        return -1;
    }
    const char **list = (const char **)(void *)storage;
    char *cursor = storage + pointers;
    size_t length = strlen(group->gr_name) + 1;
    memcpy(cursor, group->gr_name, length);
    out->name = cursor;
    cursor += length;
    for (size_t index = 0; index < members; index++) {
        length = strlen(group->gr_mem[index]) + 1;
        memcpy(cursor, group->gr_mem[index], length);
        list[index] = cursor;
        cursor += length;
    }
    list[members] = NULL;
    out->gid = group->gr_gid;
    out->members = list;
    out->member_count = members;
    out->attempts = attempts;
    out->storage = storage;
    return 0;
}

static int cv_group_lookup(const char *name, gid_t gid, size_t initial_buffer, cv_group_entry *out) {
    memset(out, 0, sizeof(*out));
    size_t capacity = cv_group_initial_buffer(initial_buffer);
    for (int attempts = 1;; attempts++) {
        char *buffer = malloc(capacity);
        if (buffer == NULL) {
            errno = ENOMEM;
            return -1;
        }
        struct group entry;
        struct group *result = NULL;
        int status = name != NULL ? getgrnam_r(name, &entry, buffer, capacity, &result)
                                  : getgrgid_r(gid, &entry, buffer, capacity, &result);
        if (status == ERANGE && capacity < CV_GROUP_BUFFER_LIMIT) {
            free(buffer);
            capacity *= 2;
            continue;
        }
        int answer;
        if (status == 0 && result != NULL) {
            answer = cv_group_copy(result, attempts, out);
        } else if (status == 0 || status == ENOENT || status == ESRCH || status == EBADF || status == EPERM) {
            // 0 with no result, ENOENT and friends all mean "no such group" (getgrnam_r(3)).
            answer = 1;
        } else {
            errno = status;
            answer = -1;
        }
        int saved = errno;
        free(buffer);
        errno = saved;
        return answer;
    }
}

int cv_group_by_name(const char *name, size_t initial_buffer, cv_group_entry *out) {
    if (name == NULL) {
        errno = EINVAL;
        return -1;
    }
    return cv_group_lookup(name, 0, initial_buffer, out);
}

int cv_group_by_gid(gid_t gid, size_t initial_buffer, cv_group_entry *out) {
    return cv_group_lookup(NULL, gid, initial_buffer, out);
}

void cv_group_entry_free(cv_group_entry *entry) {
    free(entry->storage);
    memset(entry, 0, sizeof(*entry));
}

int cv_group_gid(const char *name, gid_t *gid) {
    cv_group_entry entry;
    int result = cv_group_by_name(name, 0, &entry);
    if (result == 0) {
        *gid = entry.gid;
        cv_group_entry_free(&entry);
    }
    return result;
}

int cv_release_free_memory(void) {
    return malloc_trim(0);
}
