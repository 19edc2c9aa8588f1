// A fault injector for the end-to-end fault and crash-loop tests, loaded into connvaultd with LD_PRELOAD.
//
// It interposes the calls through which SQLite and the key file code write and sync (write, pwrite, pwrite64,
// writev, fsync, fdatasync, ftruncate, ftruncate64, rename) and, while a rule of the control file matches, fails the
// call with an errno or pauses it. The test compiles this file with the system C compiler into a shared object of its
// own (it is no SwiftPM target and never linked into a product).
//
// Environment:
//   CONNVAULT_FAULT_CONTROL  the control file, re-read on every interposed call (missing or empty: no faults).
//   CONNVAULT_FAULT_HITS     a file the shim rewrites with the number of calls it has failed or paused so far.
//
// Control file: one rule a line, `MODE OP TEXT`:
//   MODE  eio | enospc | erofs (fail with that errno) | pause (block until the rule is gone or the process dies;
//         `<hits file>.paused` is created while blocked, holding the op and the path)
//   OP    write (write, pwrite, pwrite64, writev; access with W_OK under erofs) | fsync (fsync, fdatasync) | truncate | rename | any
//   TEXT  the call applies when the descriptor's path (from /proc/self/fd) or rename's source path contains TEXT.
// The first matching rule wins. Descriptors whose path contains none of the rules' texts are never touched.

#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

enum op { OP_WRITE, OP_FSYNC, OP_TRUNCATE, OP_RENAME };
static const char *const op_names[] = {"write", "fsync", "truncate", "rename"};

static atomic_long hits;

// Reads the control file with raw system calls (nothing here may recurse into the interposed functions).
static ssize_t read_control(char *buffer, size_t size) {
    const char *path = getenv("CONNVAULT_FAULT_CONTROL");
    if (path == NULL || *path == 0) return -1;
    int fd = (int)syscall(SYS_openat, AT_FDCWD, path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t total = 0;
    while ((size_t)total < size - 1) {
        ssize_t n = syscall(SYS_read, fd, buffer + total, size - 1 - (size_t)total);
        if (n <= 0) break;
        total += n;
    }
    syscall(SYS_close, fd);
    buffer[total] = 0;
    return total;
}

static void write_file(const char *path, const char *text) {
    int fd = (int)syscall(SYS_openat, AT_FDCWD, path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return;
    syscall(SYS_write, fd, text, strlen(text));
    syscall(SYS_close, fd);
}

static void count_hit(void) {
    long count = atomic_fetch_add(&hits, 1) + 1;
    const char *path = getenv("CONNVAULT_FAULT_HITS");
    if (path == NULL || *path == 0) return;
    char text[32];
    snprintf(text, sizeof text, "%ld\n", count);
    write_file(path, text);
}

// The rule of the control file that applies to `op` on `path`: its errno, -1 for pause, 0 for none.
static int match(enum op op, const char *path) {
    char control[4096];
    if (read_control(control, sizeof control) <= 0) return 0;
    char *save = NULL;
    for (char *line = strtok_r(control, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
        char mode[16], name[16], text[1024];
        if (sscanf(line, "%15s %15s %1023s", mode, name, text) != 3) continue;
        if (strcmp(name, "any") != 0 && strcmp(name, op_names[op]) != 0) continue;
        if (strstr(path, text) == NULL) continue;
        if (strcmp(mode, "eio") == 0) return EIO;
        if (strcmp(mode, "enospc") == 0) return ENOSPC;
        if (strcmp(mode, "erofs") == 0) return EROFS;
        if (strcmp(mode, "pause") == 0) return -1;
    }
    return 0;
}

// Blocks while the pause rule holds (the test kills the process meanwhile, or removes the rule).
static void pause_here(enum op op, const char *path) {
    const char *hits_path = getenv("CONNVAULT_FAULT_HITS");
    char marker[4200] = "";
    if (hits_path != NULL && *hits_path != 0) {
        snprintf(marker, sizeof marker, "%s.paused", hits_path);
        char text[1100];
        snprintf(text, sizeof text, "%s %s\n", op_names[op], path);
        write_file(marker, text);
    }
    struct timespec step = {0, 5 * 1000 * 1000};
    while (match(op, path) == -1) nanosleep(&step, NULL);
    if (*marker != 0) syscall(SYS_unlinkat, AT_FDCWD, marker, 0);
}

// 0: go on with the real call; otherwise the errno to fail with.
static int fault(enum op op, const char *path) {
    int rule = match(op, path);
    if (rule == 0) return 0;
    count_hit();
    if (rule > 0) return rule;
    pause_here(op, path);
    return 0;
}

static int fault_fd(enum op op, int fd) {
    if (getenv("CONNVAULT_FAULT_CONTROL") == NULL) return 0;
    char link[64], path[1024];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = syscall(SYS_readlinkat, AT_FDCWD, link, path, sizeof path - 1);
    if (n <= 0) return 0;
    path[n] = 0;
    return fault(op, path);
}

#define REAL(name) ((__typeof__(&name))dlsym(RTLD_NEXT, #name))

ssize_t write(int fd, const void *buffer, size_t count) {
    int error = fault_fd(OP_WRITE, fd);
    if (error != 0) {
        errno = error;
        return -1;
    }
    return REAL(write)(fd, buffer, count);
}

ssize_t pwrite(int fd, const void *buffer, size_t count, off_t offset) {
    int error = fault_fd(OP_WRITE, fd);
    if (error != 0) {
        errno = error;
        return -1;
    }
    return REAL(pwrite)(fd, buffer, count, offset);
}

ssize_t pwrite64(int fd, const void *buffer, size_t count, off64_t offset) {
    int error = fault_fd(OP_WRITE, fd);
    if (error != 0) {
        errno = error;
        return -1;
    }
    return REAL(pwrite64)(fd, buffer, count, offset);
}

ssize_t writev(int fd, const struct iovec *iov, int count) {
    int error = fault_fd(OP_WRITE, fd);
    if (error != 0) {
        errno = error;
        return -1;
    }
    return REAL(writev)(fd, iov, count);
}

int fsync(int fd) {
    int error = fault_fd(OP_FSYNC, fd);
    if (error != 0) {
        errno = error;
        return -1;
    }
    return REAL(fsync)(fd);
}

int fdatasync(int fd) {
    int error = fault_fd(OP_FSYNC, fd);
    if (error != 0) {
        errno = error;
        return -1;
    }
    return REAL(fdatasync)(fd);
}

int ftruncate(int fd, off_t length) {
    int error = fault_fd(OP_TRUNCATE, fd);
    if (error != 0) {
        errno = error;
        return -1;
    }
    return REAL(ftruncate)(fd, length);
}

int ftruncate64(int fd, off64_t length) {
    int error = fault_fd(OP_TRUNCATE, fd);
    if (error != 0) {
        errno = error;
        return -1;
    }
    return REAL(ftruncate64)(fd, length);
}

// A read-only file system answers access(W_OK) with EROFS; so does the shim under an `erofs` rule (the path is
// matched with a slash appended, so that a rule's `/dir/` names the directory itself too).
int access(const char *path, int mode) {
    if (getenv("CONNVAULT_FAULT_CONTROL") != NULL && (mode & W_OK) != 0) {
        char slashed[4096];
        snprintf(slashed, sizeof slashed, "%s/", path);
        if (match(OP_WRITE, slashed) == EROFS) {
            count_hit();
            errno = EROFS;
            return -1;
        }
    }
    return REAL(access)(path, mode);
}

int rename(const char *from, const char *to) {
    if (getenv("CONNVAULT_FAULT_CONTROL") != NULL) {
        int error = fault(OP_RENAME, from);
        if (error != 0) {
            errno = error;
            return -1;
        }
    }
    return REAL(rename)(from, to);
}
