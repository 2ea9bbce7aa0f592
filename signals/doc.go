// Package signals names Unix signals, translates them, and knows how common
// daemons want to be stopped, reloaded and upgraded.
//
// It is pure: no I/O, no process handling. Unknown names are errors, never a
// silent default, because a wrong guess here is exactly the fast shutdown
// graceshim exists to prevent.
//
// The presets follow each daemon's documented signal handling; see
// the Preset type for what every field means.
package signals
