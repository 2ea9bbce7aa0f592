package conns

import (
	"fmt"
	"os"
	"strconv"

	"github.com/graceshim/graceshim/supervisor/proctab"
)

// TreePids returns root and all its descendants, root first, then in
// breadth-first order, from one scan of the process table (see proctab
// for why not gopsutil). A process that exits during the scan is left
// out; a missing root is an error.
func TreePids(root int) ([]int, error) {
	if _, err := os.Stat("/proc/" + strconv.Itoa(root)); err != nil {
		return nil, fmt.Errorf("cannot find process %d: %w", root, err)
	}
	table, err := proctab.Read()
	if err != nil {
		return nil, err
	}
	return proctab.Descendants(table, root), nil
}
