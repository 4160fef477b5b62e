package controller

import (
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// ClipRunes is how much of an input an error echoes (Clip), and
// ListNames how many names it lists (Names).
const (
	ClipRunes = 64
	ListNames = 10
)

// Clip is an input echoed in an error message: formatted with %q it is
// quoted, with any other verb written as is, in both cases cut to its first
// ClipRunes runes followed by "…", so that a huge input (a 1 MB namespace)
// does not come back whole.
type Clip string

// Format implements fmt.Formatter.
func (c Clip) Format(f fmt.State, verb rune) {
	s := string(c)
	if utf8.RuneCountInString(s) > ClipRunes {
		s = string([]rune(s)[:ClipRunes]) + "…"
	}
	if verb == 'q' {
		fmt.Fprintf(f, "%q", s)
		return
	}
	_, _ = io.WriteString(f, s)
}

// Names is a list of known names in an error message ("known: [a b c]"):
// it shows at most ListNames of them, then "and N more".
type Names []string

// String returns the list as "[a b c]" or "[a b … and N more]".
func (n Names) String() string {
	if len(n) <= ListNames {
		return "[" + strings.Join(n, " ") + "]"
	}
	return fmt.Sprintf("[%s and %d more]", strings.Join(n[:ListNames], " "), len(n)-ListNames)
}
