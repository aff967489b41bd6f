package main

import (
	"fmt"
	"os"
	"sync"
)

// progress prints a one-line status that rewrites itself, only when stdout
// is a terminal: scripts that capture stdout never see it.
type progress struct {
	on bool
	mu sync.Mutex
	// shown: a progress line is on screen and must be cleared before other
	// output.
	shown bool
}

func newProgress() *progress { return &progress{on: isTerminal(os.Stdout)} }

func (p *progress) printf(format string, args ...any) {
	if !p.on {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(os.Stdout, "\r\033[K"+format, args...)
	p.shown = true
}

// done clears the progress line.
func (p *progress) done() {
	if !p.on {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.shown {
		fmt.Fprint(os.Stdout, "\r\033[K")
		p.shown = false
	}
}
