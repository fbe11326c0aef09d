/*
 * mk/bench-backlog.c: an LD_PRELOAD shim for mk/bench.sh only.
 *
 * OpenSMTPD listens with a backlog of 5 (SMTPD_BACKLOG); under a burst of
 * connections the kernel drops the excess and the clients wait a second
 * or more to retry, which is most of what its throughput figure then
 * measures.  Preloaded into it, this raises every listen(2) backlog to
 * BENCH_BACKLOG (128), so that a second figure shows what the rest of
 * OpenSMTPD can do.  Never installed; never loaded into this smtpd.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <sys/socket.h>

int
listen(int fd, int backlog)
{
	static int (*real_listen)(int, int);
	const char *want = getenv("BENCH_BACKLOG");
	int n = want != NULL ? atoi(want) : 128;

	if (real_listen == NULL)
		real_listen = (int (*)(int, int))dlsym(RTLD_NEXT, "listen");
	if (real_listen == NULL)
		return -1;
	return real_listen(fd, backlog < n ? n : backlog);
}
