/* nidsbench: libnids peer for `cargo ferrule bench`.
 *
 * Reassembles every TCP stream of a capture with libnids and counts the bytes of each
 * direction (no other work), so its time is libnids' reassembly cost. Settings per
 * bench-method.md: stream table raised to 1<<17 (the default 1040 drops flows at 10 k
 * concurrency), port-scan detection off, checksums not verified.
 *
 * Build: gcc -O2 -o nidsbench nidsbench.c -lnids -lpcap
 * Run:   ./nidsbench CAPTURE.pcap
 * Prints one line: nidsbench flows=N closed=N c2s=BYTES s2c=BYTES run_ns=NS maxrss_kb=KB
 * (run_ns is nids_run() alone: opening the capture and initialising are excluded.)
 */
#include <nids.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <sys/resource.h>

static unsigned long long flows, closed, c2s, s2c;

static void on_tcp(struct tcp_stream *s, void **param)
{
	(void)param;
	switch (s->nids_state) {
	case NIDS_JUST_EST:
		s->client.collect++;
		s->server.collect++;
		flows++;
		break;
	case NIDS_DATA:
		/* server.count_new: bytes the server received (client->server). */
		c2s += s->server.count_new;
		s2c += s->client.count_new;
		break;
	default:
		closed++;
		break;
	}
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: nidsbench CAPTURE.pcap\n");
		return 2;
	}
	struct nids_chksum_ctl off = {0, 0, NIDS_DONT_CHKSUM, 0};
	nids_params.filename = argv[1];
	nids_params.n_tcp_streams = 1 << 17;
	nids_params.scan_num_hosts = 0;
	nids_params.tcp_workarounds = 1;
	nids_params.pcap_filter = NULL;
	if (!nids_init()) {
		fprintf(stderr, "nidsbench: %s\n", nids_errbuf);
		return 1;
	}
	nids_register_chksum_ctl(&off, 1);
	nids_register_tcp(on_tcp);
	struct timespec a, b;
	clock_gettime(CLOCK_MONOTONIC, &a);
	nids_run();
	clock_gettime(CLOCK_MONOTONIC, &b);
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	long long ns = (b.tv_sec - a.tv_sec) * 1000000000LL + (b.tv_nsec - a.tv_nsec);
	printf("nidsbench flows=%llu closed=%llu c2s=%llu s2c=%llu run_ns=%lld maxrss_kb=%ld\n",
	       flows, closed, c2s, s2c, ns, ru.ru_maxrss);
	return 0;
}
