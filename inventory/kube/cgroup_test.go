package kube

import "testing"

func TestPodOfCgroup(t *testing.T) {
	const uid = "8d1bb4a4-5c8e-4a39-9d4f-3b1f4f0b2f6e"
	const hash = "0123456789abcdef0123456789abcdef"
	for _, tc := range []struct {
		name, content string
		want          CgroupPod
	}{
		{"cgroupfs v1, besteffort", "12:pids:/kubepods/besteffort/pod" + uid + "/3f1a\n11:memory:/kubepods/besteffort/pod" + uid + "/3f1a\n1:name=systemd:/kubepods/besteffort/pod" + uid + "/3f1a\n",
			CgroupPod{UID: uid, Kubepods: true}},
		{"cgroupfs v2, guaranteed", "0::/kubepods/pod" + uid + "/abc\n", CgroupPod{UID: uid, Kubepods: true}},
		{"systemd v2", "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + underscores(uid) + ".slice/cri-containerd-abc.scope\n",
			CgroupPod{UID: uid, Kubepods: true}},
		{"systemd v2, guaranteed", "0::/kubepods.slice/kubepods-pod" + underscores(uid) + ".slice/cri-containerd-abc.scope\n", CgroupPod{UID: uid, Kubepods: true}},
		{"private cgroupns", "0::/../../kubepods/besteffort/pod" + uid + "/x\n", CgroupPod{UID: uid, Kubepods: true}},
		{"static pod hash", "0::/kubepods/besteffort/pod" + hash + "/x\n", CgroupPod{UID: hash, Kubepods: true}},
		{"kubepods without a pod", "0::/kubepods/besteffort\n", CgroupPod{Kubepods: true}},
		{"host process", "12:pids:/\n1:name=systemd:/init.scope\n", CgroupPod{}},
		{"pod-like name outside kubepods", "0::/system.slice/pod" + uid + "\n", CgroupPod{}},
		{"disagreeing lines", "2:cpu:/kubepods/pod" + uid + "/x\n1:memory:/kubepods/pod" + hash + "/x\n", CgroupPod{Kubepods: true}},
		{"not a uid", "0::/kubepods/podnotauid/x\n", CgroupPod{Kubepods: true}},
		{"empty", "", CgroupPod{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := PodOfCgroup(tc.content); got != tc.want {
				t.Errorf("PodOfCgroup = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func underscores(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c == '-' {
			b[i] = '_'
		}
	}
	return string(b)
}

func TestIsCRINetnsName(t *testing.T) {
	for name, want := range map[string]bool{
		"cni-8d1bb4a4-5c8e-4a39-9d4f-3b1f4f0b2f6e": true,
		"cni-8d1bb4a4-5c8e-4a39-9d4f-3b1f4f0b2f6":  false,
		"netns-8d1bb4a4-5c8e-4a39-9d4f-3b1f4f0b2f": false,
		"cni-foo": false,
		"ns1":     false,
	} {
		if got := IsCRINetnsName(name); got != want {
			t.Errorf("IsCRINetnsName(%q) = %v, want %v", name, got, want)
		}
	}
}
