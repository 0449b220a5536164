package election_test

import (
	"fmt"
	"net/netip"

	"k8s.io/apimachinery/pkg/labels"

	"github.com/ironlb/ironlb/speaker/election"
)

// Three speakers, one address. The owner dies, the next in rank takes over and
// publishes its claim, and the old owner's return moves nothing.
func Example() {
	vip := netip.MustParseAddr("192.0.2.200")
	e := election.New("node-a")
	e.SetPool("lan", election.Pool{L2: labels.Everything()})
	for _, n := range []string{"node-a", "node-b", "node-c"} {
		e.SetNode(n, election.Node{Ready: true})
		e.SetMember(n, nil)
	}
	ch := e.SetService("shop/web", election.Service{
		Addresses:     []election.Address{{IP: vip, Pool: "lan"}},
		EndpointNodes: []string{"node-c"},
	})
	fmt.Println("created:", ch.Moves)
	first, _ := e.Owner(vip)
	e.SetMember(first, e.Claims(first)) // what its memberlist metadata says

	ch = e.DeleteMember(first)
	fmt.Println("owner died:", ch.Moves)
	second, _ := e.Owner(vip)
	e.SetMember(second, e.Claims(second))

	ch = e.SetMember(first, nil) // restarted, claims nothing
	owner, _ := e.Owner(vip)
	fmt.Println("old owner back:", ch.Moves, "owner", owner)
	// Output:
	// created: [{192.0.2.200  node-b}]
	// owner died: [{192.0.2.200 node-b node-a}]
	// old owner back: [] owner node-a
}
