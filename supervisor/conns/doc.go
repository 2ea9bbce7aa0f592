// Package conns counts a server tree's live TCP connections, cheaply
// enough to poll a few times a second while the server drains.
//
// The supervisor uses it to tell systemd how a graceful stop is going and
// to notice when draining stalls. A Tracker first learns the tree's
// listening endpoints (Observe: listening sockets whose inode is one of
// the links in /proc/PID/fd of the tree's processes) and keeps them after
// the server closes its listeners, as nginx does on QUIT. Count then
// reports the connections still open on those endpoints (ModeListen, the
// default: inbound only, the server's own outbound connections excluded),
// or every TCP connection the tree's processes hold (ModeAll).
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
// /proc/net/tcp6 and Tracker.Source says why.
//
// Measured on this project's reference machine (master + 8 workers holding
// 50,000 loopback connections, one count): gopsutil v3 net.ConnectionsPid
// summed over the tree takes 7 s and allocates 1.8 GB, because it re-reads
// the whole socket table for every process; /proc/net/tcp takes 330 ms;
// sock_diag with the filter in the kernel about 58 ms. gopsutil is fine
// for one-off questions; it is far too slow to poll. The benchmarks in
// this package (go test -bench .) measure all three side by side.
//
// Unix stream sockets are not counted; see Tracker.Observe.
package conns
