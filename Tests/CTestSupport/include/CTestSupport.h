#ifndef CTESTSUPPORT_H
#define CTESTSUPPORT_H

#include <spawn.h>
#include <stdint.h>

/// posix_spawn_file_actions_addchdir_np: the child's working directory (glibc declares it only with _GNU_SOURCE).
int cts_spawn_file_actions_addchdir(posix_spawn_file_actions_t *actions, const char *path);

/// posix_spawn_file_actions_addclosefrom_np: closes every descriptor >= from in the child, so it holds nothing
/// but what the file actions before it put in place, whatever another thread opened without O_CLOEXEC.
int cts_spawn_file_actions_addclosefrom(posix_spawn_file_actions_t *actions, int from);

/// pipe2(fds, O_CLOEXEC): both ends close-on-exec from the start, so no child spawned by another thread in between
/// inherits them (glibc declares pipe2 only with _GNU_SOURCE).
int cts_pipe_cloexec(int fds[2]);

/// accept4(fd, NULL, NULL, SOCK_CLOEXEC): the accepted socket is close-on-exec from the start (glibc declares
/// accept4 only with _GNU_SOURCE).
int cts_accept_cloexec(int fd);

/// Installs a seccomp filter under which every later munmap(2) of an address in [start, end) fails with EPERM (after
/// PR_SET_NO_NEW_PRIVS), so that memory freed there stays mapped and can be read back after the free; every other
/// munmap works (an allocator that checks munmap's result, as the sanitizers' do, is not disturbed). For a child
/// process that ends soon after; 0 on success, -1 with errno otherwise (EINVAL: the range crosses a 4 GiB boundary).
int cts_deny_munmap(uintptr_t start, uintptr_t end);

#endif
