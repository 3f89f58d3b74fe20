package etcdtest

import "testing"

// TestCluster checks the harness itself: a cluster forms, survives the
// loss of its leader, loses quorum with two members gone and recovers
// when they are back.
func TestCluster(t *testing.T) {
	c := Start(t)
	lead := c.Leader()
	if lead < 0 {
		t.Fatal("no leader in a healthy cluster")
	}
	c.Kill(lead)
	c.WaitHealthy(Size - 1)
	next := c.Leader()
	if next < 0 || next == lead {
		t.Fatalf("leader after killing %d: %d", lead, next)
	}
	c.Kill(next)
	for i := range c.members {
		if c.members[i].cmd != nil && c.health(c.Endpoint(i)) {
			t.Fatalf("member %d healthy without quorum", i)
		}
	}
	c.Restart(lead)
	c.Restart(next)
	c.WaitHealthy(Size)
	if c.Leader() < 0 {
		t.Fatal("no leader after recovery")
	}
}
