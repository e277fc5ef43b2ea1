#define _GNU_SOURCE
#include <sys/socket.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <linux/capability.h>
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "CEpoll.h"

#ifdef __linux__
int moat_accept4(int fd, struct sockaddr *address, socklen_t *length, int flags) {
    return accept4(fd, address, length, flags);
}

int moat_set_no_new_privs(void) {
    return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
}

int moat_drop_thread_capabilities(void) {
    // Ambient first: a capability cannot stay ambient once it leaves the permitted set, but clearing it
    // explicitly also covers kernels that keep it until the next exec. EINVAL: a kernel without ambient caps.
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL) return -1;
    struct __user_cap_header_struct header = { _LINUX_CAPABILITY_VERSION_3, 0 };
    struct __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3];
    memset(data, 0, sizeof data);
    return (int)syscall(SYS_capset, &header, data);
}

static atomic_int moat_capability_drops;

static void moat_capability_signal(int number, siginfo_t *info, void *context) {
    (void)number;
    (void)context;
    // Only our own tgkill: a SIGSYS from elsewhere is not a request to drop.
    if (info->si_code != SI_TKILL || info->si_pid != getpid()) return;
    int saved = errno;
    if (moat_drop_thread_capabilities() == 0) atomic_fetch_add(&moat_capability_drops, 1);
    errno = saved;
}

int moat_drop_capabilities_of_every_thread(void) {
    if (moat_drop_thread_capabilities() != 0) return -1;
    // SIGSYS because libdispatch's workers block every asynchronous signal but the synchronous ones
    // (SIGSYS among them), and nothing here raises it (no seccomp filter).
    struct sigaction action, previous;
    memset(&action, 0, sizeof action);
    action.sa_sigaction = moat_capability_signal;
    action.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&action.sa_mask);
    if (sigaction(SIGSYS, &action, &previous) != 0) return -1;
    pid_t process = getpid();
    pid_t self = (pid_t)syscall(SYS_gettid);
    // A thread started by one not yet reached is found by the next round; the caller checks the result.
    for (int round = 0; round < 3; round++) {
        DIR *tasks = opendir("/proc/self/task");
        if (tasks == NULL) break;
        atomic_store(&moat_capability_drops, 0);
        int sent = 0;
        struct dirent *entry;
        while ((entry = readdir(tasks)) != NULL) {
            pid_t thread = (pid_t)atoi(entry->d_name);
            if (thread <= 0 || thread == self) continue;
            if (syscall(SYS_tgkill, process, thread, SIGSYS) == 0) sent++;
        }
        closedir(tasks);
        // Bounded: 2 s at most (a thread may exit before it handles the signal).
        for (int waited = 0; atomic_load(&moat_capability_drops) < sent && waited < 2000; waited++) {
            struct timespec millisecond = { 0, 1000000 };
            nanosleep(&millisecond, NULL);
        }
    }
    sigaction(SIGSYS, &previous, NULL);
    return 0;
}
#endif

#ifdef __linux__
#include <malloc.h>
int moat_malloc_trim(void) { return malloc_trim(0); }
#endif

#ifdef __linux__
#include <link.h>
#include <sys/mman.h>
#include <unistd.h>

static int release_code(struct dl_phdr_info *info, size_t size, void *data) {
    (void)size;
    size_t *released = data;
    long page = sysconf(_SC_PAGESIZE);
    for (int index = 0; index < info->dlpi_phnum; index++) {
        const ElfW(Phdr) *segment = &info->dlpi_phdr[index];
        // Segments mapped without write permission (code, read-only data, symbol tables) were never
        // written, so dropping their pages loses nothing; the writable segment (which holds RELRO's
        // relocated data, protected only afterwards) is left alone: a written private page would be lost.
        if (segment->p_type != PT_LOAD || (segment->p_flags & PF_W)) continue;
        uintptr_t start = (info->dlpi_addr + segment->p_vaddr) & ~(uintptr_t)(page - 1);
        uintptr_t end = (info->dlpi_addr + segment->p_vaddr + segment->p_memsz + page - 1) & ~(uintptr_t)(page - 1);
        if (madvise((void *)start, end - start, MADV_DONTNEED) == 0) *released += end - start;
    }
    return 0;
}

size_t moat_release_code_pages(void) {
    size_t released = 0;
    dl_iterate_phdr(release_code, &released);
    return released;
}
#endif
