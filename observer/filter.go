package observer

import "golang.org/x/net/bpf"

// dnsFilter is a classic BPF program for a SOCK_DGRAM packet socket (the
// packet starts at the IP header): keep UDP and TCP packets from port 53,
// IPv4 (not a non-first fragment) or IPv6 (no extension headers).
var dnsFilter = []bpf.Instruction{
	/* 0 */ bpf.LoadAbsolute{Off: 0, Size: 1},
	/* 1 */ bpf.ALUOpConstant{Op: bpf.ALUOpShiftRight, Val: 4},
	/* 2 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: 6, SkipTrue: 9}, // -> 12
	/* 3 */ bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: 4, SkipTrue: 14}, // -> 18 drop
	/* 4 */ bpf.LoadAbsolute{Off: 9, Size: 1},
	/* 5 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: 17, SkipTrue: 1}, // -> 7
	/* 6 */ bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: 6, SkipTrue: 11}, // -> 18
	/* 7 */ bpf.LoadAbsolute{Off: 6, Size: 2},
	/* 8 */ bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: 0x1fff, SkipTrue: 9}, // -> 18
	/* 9 */ bpf.LoadMemShift{Off: 0},
	/* 10 */ bpf.LoadIndirect{Off: 0, Size: 2},
	/* 11 */ bpf.Jump{Skip: 4}, // -> 16
	/* 12 */ bpf.LoadAbsolute{Off: 6, Size: 1},
	/* 13 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: 17, SkipTrue: 1}, // -> 15
	/* 14 */ bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: 6, SkipTrue: 3}, // -> 18
	/* 15 */ bpf.LoadAbsolute{Off: 40, Size: 2},
	/* 16 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: 53, SkipFalse: 1}, // -> 18
	/* 17 */ bpf.RetConstant{Val: 1 << 16},
	/* 18 */ bpf.RetConstant{Val: 0},
}
