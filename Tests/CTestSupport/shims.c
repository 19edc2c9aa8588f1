#define _GNU_SOURCE
#include "CTestSupport.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

int cts_spawn_file_actions_addchdir(posix_spawn_file_actions_t *actions, const char *path) {
    return posix_spawn_file_actions_addchdir_np(actions, path);
}

int cts_spawn_file_actions_addclosefrom(posix_spawn_file_actions_t *actions, int from) {
    return posix_spawn_file_actions_addclosefrom_np(actions, from);
}

int cts_pipe_cloexec(int fds[2]) {
    return pipe2(fds, O_CLOEXEC);
}

int cts_accept_cloexec(int fd) {
    return accept4(fd, NULL, NULL, SOCK_CLOEXEC);
}
