// Package conns counts a server tree's live connections while it drains,
// following each close as the kernel announces it.
//
// The supervisor uses it to tell systemd how a graceful stop is going and
// to notice when draining stalls. A Tracker first learns the tree's
// listening endpoints (Observe: TCP and unix stream listening sockets
// whose inode is one of the links in /proc/PID/fd of the tree's
// processes) and keeps them after the server closes its listeners, as
// nginx does on QUIT. Drain then follows the connections the tree holds
// on those endpoints (ModeListen, the default: inbound only, the server's
// own outbound connections excluded), or every TCP connection the tree's
// processes hold (ModeAll), from the graceful signal until the last one
// goes. Count is a one-off count by endpoint alone.
//
// # Following a drain
//
// Drain takes the set of sockets once: one dump with the endpoint filter
// in the kernel, kept where the socket's inode is one of the tree's
// descriptors, so another process's connections on the same endpoint (an
// SO_REUSEPORT handover, a new instance, connections waiting in a
// socket-activated listener's backlog) do not count. It then subscribes
// to the kernel's TCP destroy messages (sock_diag multicast groups,
// Linux 4.10+; it subscribes before dumping, so nothing freed in between
// is missed) and takes each freed socket of the set off, by its socket
// cookie. A re-dump every few seconds catches what no message announces
// (a socket the server closed first, orphaned in FIN_WAIT2 towards a
// silent client), and one follows any overrun. Where the subscription is
// refused (no CAP_NET_ADMIN, an old kernel, a sandbox), or the first dump
// had to go through /proc/net (which has no cookies), Drain polls,
// backing off from 20 ms to 250 ms, and says so. Unix connections have no
// destroy message: they are polled on the same schedule, cheaply.
//
// # What counts
//
// ESTABLISHED and CLOSE_WAIT (the server still holds the socket and,
// usually, a request), and FIN_WAIT1, FIN_WAIT2, CLOSING and LAST_ACK on
// sockets a process still owns (a server that shut down its writing side
// and waits for the client, like nginx's lingering close). SYN_RECV is
// reported but not in Counts.Total: the server has not accepted those and
// drops them when its listener closes, and counting them would let a SYN
// flood hold a drain open. Orphaned sockets, TIME_WAIT and LISTEN never
// count. See Counts.
//
// # Backends
//
// The default backend is netlink sock_diag (NETLINK_SOCK_DIAG with
// inet_diag_req_v2): one dump per address family the listeners use, with
// the state mask and the endpoint match (local port, and address for a
// listener bound to one) compiled to inet_diag bytecode, so the kernel
// sends only the server's inbound sockets. It reads them on a raw socket
// into one reused buffer. When netlink is refused (EPERM, no inet_diag
// support, ...) the Tracker falls back to parsing /proc/net/tcp and
// /proc/net/tcp6 for good and Tracker.Source says why. Any other failure
// (ENOBUFS, ENOMEM, EMFILE) is retried once; if the retry fails too, that
// one count goes through /proc/net and the next tries netlink again.
//
// Measured on this project's reference machine (master + 8 workers holding
// 50,000 loopback connections, one count): gopsutil v3 net.ConnectionsPid
// summed over the tree takes 7 s and allocates 1.8 GB, because it re-reads
// the whole socket table for every process; /proc/net/tcp takes 330 ms;
// sock_diag with the filter in the kernel about 58 ms. gopsutil is fine
// for one-off questions; it is far too slow to poll. The benchmarks in
// this package (go test -bench .) measure all three side by side, and the
// drain, event-driven and polling (BenchmarkDrain).
package conns
