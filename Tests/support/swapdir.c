/* swapdir A B SECONDS: swaps the directory entries A and B (a real directory and a
   symlink, say) with renameat2(RENAME_EXCHANGE) as fast as it can, for SECONDS.
   The hostile tenant's race in the tests: run as the tenant, inside its home. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#ifndef RENAME_EXCHANGE
#define RENAME_EXCHANGE (1 << 1)
#endif

int main(int argc, char **argv) {
    if (argc != 4) { fprintf(stderr, "usage: swapdir A B SECONDS\n"); return 2; }
    time_t end = time(NULL) + atoi(argv[3]);
    long swaps = 0;
    while (time(NULL) < end) {
        if (syscall(SYS_renameat2, AT_FDCWD, argv[1], AT_FDCWD, argv[2], RENAME_EXCHANGE) == 0) swaps++;
    }
    printf("%ld\n", swaps);
    return 0;
}
