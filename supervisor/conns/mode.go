package conns

import "fmt"

// Mode says which connections count.
type Mode int

const (
	// ModeListen counts inbound connections on the tree's remembered
	// listening endpoints. It is the default.
	ModeListen Mode = iota
	// ModeAll counts every TCP connection owned by the tree's processes,
	// inbound and outbound.
	ModeAll
)

// ParseMode maps a configuration word to a Mode: "listen" or "all".
// Anything else is an error, never a silent default.
func ParseMode(s string) (Mode, error) {
	switch s {
	case "listen":
		return ModeListen, nil
	case "all":
		return ModeAll, nil
	}
	return 0, fmt.Errorf("unknown connection mode %q (want \"listen\" or \"all\")", s)
}

// String returns the word ParseMode accepts for m.
func (m Mode) String() string {
	switch m {
	case ModeListen:
		return "listen"
	case ModeAll:
		return "all"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}
