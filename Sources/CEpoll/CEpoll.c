#define _GNU_SOURCE
#include <sys/socket.h>
#include <sys/prctl.h>
#include "CEpoll.h"

#ifdef __linux__
int moat_accept4(int fd, struct sockaddr *address, socklen_t *length, int flags) {
    return accept4(fd, address, length, flags);
}

int moat_set_no_new_privs(void) {
    return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
}
#endif

#ifdef __linux__
#include <malloc.h>
int moat_malloc_trim(void) { return malloc_trim(0); }
#endif
