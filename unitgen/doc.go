// Package unitgen writes systemd units that run a daemon under graceshim,
// converts existing units to them, and lints units for the ways a stop
// loses requests.
//
// Most stop bugs live in unit files: a KillSignal= that is the daemon's
// fast stop, an ExecStop= that returns at once and is followed by SIGTERM,
// a wrapper under KillMode=control-group that never sees the signal it
// should translate, a TimeoutStopSec= shorter than the daemon's own grace.
// Generate writes a unit that avoids them (Type=notify, KillMode=mixed, a
// TimeoutStopSec= that fits the systemd version), Convert rewrites an
// existing unit or writes a drop-in for it, and Lint explains each problem
// with its fix. With a socket unit (SocketListens, GenerateSocket) the
// listening sockets, read from the daemon's configuration or flags, stay
// open in systemd across restarts.
//
// Arguments are quoted so that they reach the daemon byte for byte
// through systemd's command line parser, specifier and variable
// expansion (QuoteArg, SplitExec). Units are read by a parser of its own
// that follows systemd's config_parse(): what systemd accepts (long lines,
// comments inside continuations, lines without '=' warned about) is read,
// what it refuses (an empty file, a broken section header) is an error.
//
// A generated or converted unit reloads through `graceshim reload
// $MAINPID` for every daemon that can reload, keeps a reload command of
// the daemon's own, and never drops a working reload; it keeps what a
// daemon that speaks sd_notify tells systemd (through graceshim's relay)
// and the unit's own sandbox, extended with graceshim's path.
package unitgen
