package proctab

import (
	"os"
	"os/exec"
	"reflect"
	"testing"
)

func TestDescendants(t *testing.T) {
	table := []Entry{{1, 0}, {10, 1}, {11, 10}, {12, 10}, {13, 11}, {20, 1}, {30, 99}}
	tests := []struct {
		roots []int
		want  []int
	}{
		{[]int{10}, []int{10, 11, 12, 13}},
		{[]int{20}, []int{20}},
		{[]int{10, 20}, []int{10, 20, 11, 12, 13}},
		{[]int{42}, []int{42}},
	}
	for _, tt := range tests {
		if got := Descendants(table, tt.roots...); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Descendants(%v) = %v, want %v", tt.roots, got, tt.want)
		}
	}
	if got := Children(table, 10); !reflect.DeepEqual(got, []int{11, 12}) {
		t.Errorf("Children(10) = %v", got)
	}
	if !Has(table, 13) || Has(table, 14) {
		t.Error("Has is wrong")
	}
}

func TestReadSeesAChild(t *testing.T) {
	cmd := exec.Command("sleep", "10")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	table, err := Read()
	if err != nil {
		t.Fatal(err)
	}
	kids := Children(table, os.Getpid())
	found := false
	for _, k := range kids {
		found = found || k == cmd.Process.Pid
	}
	if !found {
		t.Errorf("children of %d = %v, want %d among them", os.Getpid(), kids, cmd.Process.Pid)
	}
}
