#include <systemd/sd-journal.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

/* glibc declares syncfs only under _GNU_SOURCE, which Swift's Glibc module does not set. */
extern int syncfs(int fd);
static inline int desa_syncfs(int fd) { return syncfs(fd); }

/* pipe2 is GNU too: pipes that do not leak into other children. */
extern int pipe2(int pipefd[2], int flags);
static inline int desa_pipe2(int *fds, int flags) { return pipe2(fds, flags); }
