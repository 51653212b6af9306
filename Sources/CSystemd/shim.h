#include <systemd/sd-journal.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>
#include <errno.h>

/* glibc declares syncfs only under _GNU_SOURCE, which Swift's Glibc module does not set. */
extern int syncfs(int fd);
static inline int desa_syncfs(int fd) { return syncfs(fd); }

/* pipe2 is GNU too: pipes that do not leak into other children. */
extern int pipe2(int pipefd[2], int flags);
static inline int desa_pipe2(int *fds, int flags) { return pipe2(fds, flags); }

#include <grp.h>
#include <signal.h>
#include <sys/wait.h>

/* Sends SIGKILL to every process the given UID may signal (kill(-1) from that UID:
   exactly the processes whose real or saved UID is uid), from a forked child that
   drops to that UID first. Only async-signal-safe calls after fork(). Returns the
   child's exit status, or -1 if it could not run. */
static inline int desa_kill_all_as(unsigned uid, unsigned gid) {
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        if (setgroups(0, NULL) != 0 || setgid(gid) != 0 || setuid(uid) != 0) _exit(2);
        kill(-1, SIGKILL);
        _exit(0);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0) { if (errno != EINTR) return -1; }
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* glibc (2.34+) declares posix_spawn_file_actions_addclosefrom_np only under
   _GNU_SOURCE. A child desa starts (nginx, php-fpm: daemons that live on) must not
   inherit any descriptor of ours beyond 0-2: another child's pipe or a test's socket
   would stay open in them for ever. */
#include <spawn.h>
extern int posix_spawn_file_actions_addclosefrom_np(posix_spawn_file_actions_t *, int);
static inline int desa_spawn_closefrom(posix_spawn_file_actions_t *fa, int from) {
    return posix_spawn_file_actions_addclosefrom_np(fa, from);
}

/* glibc (2.29+): the child starts in this directory. GNU too. */
extern int posix_spawn_file_actions_addchdir_np(posix_spawn_file_actions_t *, const char *);
static inline int desa_spawn_chdir(posix_spawn_file_actions_t *fa, const char *dir) {
    return posix_spawn_file_actions_addchdir_np(fa, dir);
}

/* glibc's malloc tuning (malloc.h is not in Swift's Glibc module): the agent limits its
   arenas and hands freed memory back after each sweep. */
#include <malloc.h>
static inline int desa_malloc_arena_max(int n) { return mallopt(M_ARENA_MAX, n); }
static inline int desa_malloc_mmap_threshold(int bytes) {
    return mallopt(M_MMAP_THRESHOLD, bytes) && mallopt(M_TRIM_THRESHOLD, bytes);
}
static inline int desa_malloc_trim(void) { return malloc_trim(0); }

#include <sys/xattr.h>
/* An extended attribute of a path (an ACL), without following a link. */
static inline long desa_lgetxattr(const char *path, const char *name, void *value, unsigned long size) {
    return (long)lgetxattr(path, name, value, size);
}
