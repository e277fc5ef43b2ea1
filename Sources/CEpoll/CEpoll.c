#define _GNU_SOURCE
#include <sys/socket.h>
#include "CEpoll.h"

#ifdef __linux__
int moat_accept4(int fd, struct sockaddr *address, socklen_t *length, int flags) {
    return accept4(fd, address, length, flags);
}
#endif
