package fdlimit

import "testing"

func TestConnCap(t *testing.T) {
	for _, tc := range []struct {
		limit uint64
		want  int
	}{
		{0, 16},
		{20, 16},
		{1024, 512},
		{2048, 1024},
		{20000, 18976},
		{1 << 20, 65536},
	} {
		if got := ConnCap(tc.limit); got != tc.want {
			t.Errorf("ConnCap(%d) = %d, want %d", tc.limit, got, tc.want)
		}
	}
}

func TestRaiseNeverLowers(t *testing.T) {
	got, err := Raise()
	if err != nil {
		t.Fatal(err)
	}
	if got < 1024 {
		t.Fatalf("limit %d after Raise", got)
	}
	again, err := Raise()
	if err != nil || again < got {
		t.Fatalf("second Raise: %d %v, first %d", again, err, got)
	}
}
