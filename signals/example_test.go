package signals_test

import (
	"fmt"
	"syscall"

	"github.com/graceshim/graceshim/signals"
)

func ExampleForCommand() {
	p, _ := signals.ForCommand("/usr/sbin/nginx")
	m := p.Map()
	fmt.Println(p.Name, signals.Name(m.Translate(syscall.SIGTERM)), signals.Name(m.Translate(syscall.SIGHUP)))
	// Output: nginx QUIT HUP
}

func ExampleParseMap() {
	m, err := signals.ParseMap("TERM:QUIT,INT:QUIT")
	if err != nil {
		panic(err)
	}
	fmt.Println(m)
	// Output: INT:QUIT,TERM:QUIT
}
