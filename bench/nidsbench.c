/* nidsbench: libnids peer for `cargo ferrule bench`.
 *
 * Reassembles every TCP stream of a capture with libnids and, like the monitor's bench
 * consumer, reads every byte it is handed: each callback's new bytes are folded into one word
 * (the same fold as `fold` in image/src/host/engine.rs), so both engines do the same work per
 * byte, reassembly plus one read of the stream. Settings per
 * bench-method.md: stream table raised to 1<<17 (the default 1040 drops flows at 10 k
 * concurrency), port-scan detection off, checksums not verified.
 *
 * Fair feeding: the capture is read into memory first and handed to libnids as an in-memory
 * file (fmemopen + pcap_fopen_offline through nids_params.pcap_desc), as the monitor and the
 * parse floor read theirs from memory: no read system calls inside the timed part.
 *
 * Build: gcc -O2 -o nidsbench nidsbench.c -lnids -lpcap
 * Run:   ./nidsbench CAPTURE.pcap [STREAMS]   (STREAMS: the stream table, default 1<<17;
 *        libnids tracks at most 3/4 of it at once)
 * Prints one line: nidsbench flows=N closed=N c2s=BYTES s2c=BYTES run_ns=NS maxrss_kb=KB mix=HEX
 * (run_ns is nids_run() alone: loading the capture and initialising are excluded.)
 */
#include <nids.h>
#include <stdio.h>
#include <stdlib.h>
#include <pcap.h>
#include <time.h>
#include <string.h>
#include <stdint.h>
#include <sys/resource.h>

static unsigned long long flows, closed, c2s, s2c;
static uint64_t mix;

/* Every byte of b[0..n), folded into one word: 8-byte little-endian words XORed, then the
 * remaining bytes rotated in (the monitor's consumer does the same). */
static uint64_t fold(const unsigned char *b, size_t n)
{
	uint64_t x = 0, w;
	size_t i = 0;
	for (; i + 8 <= n; i += 8) {
		memcpy(&w, b + i, 8);
		x ^= w;
	}
	for (; i < n; i++)
		x = ((x << 8) | (x >> 56)) ^ b[i];
	return x;
}

/* The bytes appended to `h` since the last callback. */
static uint64_t fold_new(const struct half_stream *h)
{
	if (h->count_new == 0)
		return 0;
	return fold((const unsigned char *)h->data + (h->count - h->offset) - h->count_new,
		    h->count_new);
}

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
		mix ^= fold_new(&s->server) ^ fold_new(&s->client);
		break;
	default:
		closed++;
		break;
	}
}

int main(int argc, char **argv)
{
	if (argc != 2 && argc != 3) {
		fprintf(stderr, "usage: nidsbench CAPTURE.pcap [STREAMS]\n");
		return 2;
	}
	FILE *in = fopen(argv[1], "rb");
	if (!in) {
		perror(argv[1]);
		return 1;
	}
	fseek(in, 0, SEEK_END);
	long len = ftell(in);
	fseek(in, 0, SEEK_SET);
	char *mem = malloc(len > 0 ? len : 1);
	if (!mem || fread(mem, 1, len, in) != (size_t)len) {
		fprintf(stderr, "nidsbench: cannot read %s\n", argv[1]);
		return 1;
	}
	fclose(in);
	FILE *mf = fmemopen(mem, len, "rb");
	char err[PCAP_ERRBUF_SIZE];
	pcap_t *p = mf ? pcap_fopen_offline(mf, err) : NULL;
	if (!p) {
		fprintf(stderr, "nidsbench: %s\n", mf ? err : "fmemopen failed");
		return 1;
	}
	struct nids_chksum_ctl off = {0, 0, NIDS_DONT_CHKSUM, 0};
	nids_params.filename = NULL;
	nids_params.pcap_desc = p;
	nids_params.n_tcp_streams = argc == 3 ? atoi(argv[2]) : 1 << 17;
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
	printf("nidsbench flows=%llu closed=%llu c2s=%llu s2c=%llu run_ns=%lld maxrss_kb=%ld mix=%llx\n",
	       flows, closed, c2s, s2c, ns, ru.ru_maxrss, (unsigned long long)mix);
	return 0;
}
