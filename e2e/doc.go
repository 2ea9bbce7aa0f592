// Package e2e holds graceshim's end-to-end tests: they build the graceshim
// binary once and drive it as users do, against real programs: a systemd
// user manager (../shared/FACTS.md section 6), nginx, HAProxy and the other
// daemons of Debian's packages, curl and wrk as clients, bash with RHEL's
// and Debian's init-script functions, and a real pty.
//
// harness_test.go holds what the scenarios share (the built binary, the
// user manager, nginx sites, downloads); each other file is one area.
// The package has no code outside its tests.
package e2e
