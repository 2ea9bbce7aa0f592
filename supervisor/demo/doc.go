// Package demo shows graceshim's main job on a machine with nothing
// installed: a small slow HTTP server, started under supervisor.Run as
// graceshim's child (graceshim itself, re-executed), is stopped with SIGTERM
// while downloads are in flight, and the drain is shown live from what
// graceshim would tell systemd.
//
// The server behaves like nginx: QUIT is its graceful stop (stop
// accepting, finish what is in flight), TERM and INT are its fast stop
// (exit at once, cutting every download). graceshim's job is to turn the
// TERM systemd sends into the QUIT the server wants; Options.Compare runs
// the same stop with TERM passed on as it is, to show what would be lost.
//
// The demo process runs supervisor.Run, which waits for every child with
// wait4(-1): nothing in this package waits for a child any other way.
package demo
