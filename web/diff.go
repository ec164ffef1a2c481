package web

import (
	"bytes"
	"encoding/json"
	"strings"
)

// diffLine is one line of a definition diff: kept (" "), removed ("-") or
// added ("+").
type diffLine struct {
	Op, Text string
}

// Class names the line's style.
func (d diffLine) Class() string {
	switch d.Op {
	case "-":
		return "del"
	case "+":
		return "add"
	}
	return "same"
}

// maxDiffLines bounds each side of a diff (the work is their product).
const maxDiffLines = 400

// diffJSON returns a line diff of two JSON documents, each indented first
// so that a changed field is a changed line.
func diffJSON(old, new json.RawMessage) []diffLine {
	return diffLines(jsonLines(old), jsonLines(new))
}

func jsonLines(b json.RawMessage) []string {
	var out bytes.Buffer
	if json.Indent(&out, b, "", "  ") != nil {
		out.Reset()
		out.Write(b)
	}
	lines := strings.Split(out.String(), "\n")
	if len(lines) > maxDiffLines {
		lines = append(lines[:maxDiffLines], "…")
	}
	return lines
}

// diffLines is the longest-common-subsequence diff of a and b.
func diffLines(a, b []string) []diffLine {
	// lcs[i][j] is the LCS length of a[i:] and b[j:].
	lcs := make([][]int, len(a)+1)
	for i := range lcs {
		lcs[i] = make([]int, len(b)+1)
	}
	for i := len(a) - 1; i >= 0; i-- {
		for j := len(b) - 1; j >= 0; j-- {
			if a[i] == b[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var out []diffLine
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		switch {
		case a[i] == b[j]:
			out = append(out, diffLine{" ", a[i]})
			i, j = i+1, j+1
		case lcs[i+1][j] >= lcs[i][j+1]:
			out = append(out, diffLine{"-", a[i]})
			i++
		default:
			out = append(out, diffLine{"+", b[j]})
			j++
		}
	}
	for ; i < len(a); i++ {
		out = append(out, diffLine{"-", a[i]})
	}
	for ; j < len(b); j++ {
		out = append(out, diffLine{"+", b[j]})
	}
	return out
}
