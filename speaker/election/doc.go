// Package election decides which node announces each LoadBalancer address: one
// owner per address for layer 2 (ARP/NDP), and whether the local node
// advertises it for BGP. It is a pure library: no Kubernetes client, no
// sockets, no clock. The speaker feeds it Nodes, IPPools, Services (with the
// nodes of their ready endpoints) and memberlist members (with the addresses
// each one claims) and acts on the Changes it returns.
//
// Typical use, from the speaker's single event loop:
//
//	e := election.New(myNode)
//	pool, err := election.PoolFromSpec(ippool.Spec.Advertise)
//	ch := e.SetPool(ippool.Name, pool)
//	ch = e.SetNode(node.Name, election.NodeFromObject(node))
//	ch = e.SetService(key, election.Service{Addresses: ..., Local: ...,
//		EndpointNodes: election.ReadyEndpointNodes(slices)})
//	ch = e.SetMember(member.Name, member.Meta.Claims) // memberlist join/update, own node included
//	ch = e.DeleteMember(member.Name)                  // memberlist leave/death
//	for _, m := range ch.Moves {
//		// m.To == myNode: answer ARP/NDP for m.IP and send gratuitous ARP/NA
//		// m.From == myNode: stop answering for m.IP
//	}
//	if claims := e.Claims(myNode); !slices.Equal(claims, published) {
//		// publish claims in the memberlist metadata (membership.Cluster.SetMeta)
//	}
//	// ch.Advertise / ch.Withdraw: this node's BGP paths.
//
// # Who is eligible
//
// A node is a layer-2 candidate for an address when all hold: its speaker is
// alive in memberlist; its Node exists, is Ready and is not labelled
// node.kubernetes.io/exclude-from-external-load-balancers; the address's pool
// (Address.Pool) exists, announces by L2 and its nodeSelector selects the node;
// and either a Service using the address has externalTrafficPolicy Cluster and
// at least one ready endpoint anywhere, or the node hosts a ready endpoint of a
// Local Service using it. Hence an address whose Services have no ready endpoint
// is not announced at all, for Cluster as for Local: answering ARP would only
// attract traffic that kube-proxy drops or rejects, and BGP withdraws in the
// same case (the same choice as MetalLB). Services sharing an address (the
// allocator lets only Services of the same policy, and for Local with equal
// selectors, share) contribute the union of their candidates.
//
// BGP: the local node advertises an address when its Node is Ready, not
// excluded, selected by the pool's advertise.bgp nodeSelector, and the address
// has a ready endpoint anywhere (Cluster) or on this node (Local). Every such
// node advertises; memberlist is not consulted (the router's ECMP spreads the
// traffic and a dead node's BGP session ends on its own).
//
// # Owner
//
// Among the candidates C(v) of address v, the owner is the candidate with the
// least key (claimed(n, v) ? 0 : 1, sha256(n + "#" + v)), where v is written as
// netip.Addr.String ("192.0.2.200", "2001:db8::200"), digests compare as bytes
// and equal digests (never seen in practice) fall back to the node name. With
// no claims this is plain rendezvous hashing: each address goes to the
// candidate of least hash, addresses spread evenly, and when a candidate
// appears or disappears only the addresses it wins or held move.
//
// A claim is an address listed in a member's memberlist metadata: each speaker
// publishes the addresses it owns. Claims are what stop failback: a node that
// comes back (a restarted speaker publishes no claims) does not take an address
// from a current owner that is still a candidate, because a claimant always
// comes before a non-claimant. A claim counts only while its node is a
// candidate in the reader's view, so a dead or ineligible owner is replaced at
// once by the best-ranked remaining candidate. Two claimants for one address
// (after a partition heals, or while a claim is in flight) are ordered by rank,
// so every speaker drops the same one.
//
// # Protocol
//
// Every speaker runs the same Election on its own inputs and
//
//  1. announces exactly the addresses it owns in its own view (Moves to and
//     from its node);
//  2. publishes Claims(self) as its memberlist metadata whenever it changes,
//     and feeds its own published metadata back with SetMember like any other
//     member (memberlist reports the local node's updates too). If not all
//     claims fit in the metadata, it publishes the first ones, in the order
//     Claims returns them, and feeds back only those;
//  3. when Changes.Contested lists an address it owns, republishes its metadata
//     unchanged (memberlist's UpdateNode bumps the incarnation and gossips it
//     again) so that a claimant which missed its claim hears it;
//  4. after joining (or rejoining) memberlist, settles for a few gossip rounds
//     (300 ms, six gossip intervals of the membership package, is what the
//     simulation uses) before it announces or publishes anything: the push/pull of the join comes from one
//     peer whose view may be a gossip round old, and claims still being relayed
//     reach the newcomer during that time. Without it, a node restarting within
//     a gossip round of its replacement claiming an address could win the
//     address back.
//
// Publishing its own claims never changes a speaker's own answer (owning v
// means being the least key; claiming v only lowers its key), so step 2 is a
// fixed point after one round.
//
// Convergence. Suppose inputs stop changing: every speaker has the same
// Kubernetes view, the same alive set, and (after at most one gossip
// propagation G, with push/pull as the backstop) the same published claims.
// All compute the same owner o(v) for every v, because the owner is a function
// of those inputs alone. Each then publishes {v : o(v) = self}: o(v) claims v
// and every other speaker drops v. After one more propagation the only
// claimant of v is o(v), which keeps it the least key: the state is stable,
// with exactly one announcer per address that has a candidate, and it is one of
// its candidates. So all speakers agree within 2G of the last input change.
//
// Two speakers announce v at once only while their views differ, and they
// differ only while a message is in flight (memberlist gossip, bounded by G) or
// while their informers lag each other (Kubernetes updates reach speakers at
// different times). Once each has seen the other alive with its claim on v they
// order the two claims the same way and the loser stops: a double announcement
// lasts at most the informer lag difference plus two gossip delays (the
// contested owner's republication reaching the loser). memberlist's gossip
// reaches all N members in O(log N) gossip intervals (50 ms each with the
// membership package), i.e. G is typically 100-300 ms for up to 100 nodes.
//
// No failback holds for an owner that stays alive and eligible and whose claim
// was published before the other node joined (the settle time covers a join
// racing the claim). After a memberlist partition heals, the rank order among
// claimants decides, which can move an address back to the better-ranked side;
// that is the price of ending the split brain deterministically.
//
// Consequences: with no failback, addresses do not rebalance by themselves
// after a rolling restart (the last restarted node owns nothing until
// something else moves); speakers that start within the settle time of each
// other spread addresses by rank as if they had started together.
//
// The simulation in this package's tests runs this protocol among speakers
// with their own Elections, gossip delays, per-observer failure detection,
// joins from stale peers, push/pull, partitions, message loss and informer lag,
// and checks at every convergence: one owner per address with a candidate, the
// same answer in every speaker, published claims equal to Claims, owners that
// stayed alive and eligible kept (no failback), and double announcements
// shorter than the bound above. TestElectionOverMemberlist (package
// membership) runs it over real memberlist instances.
//
// # Costs
//
// Per address the Election keeps its owner and rank winner (with their keys),
// its Services, its pool and its Local endpoint nodes. Per pool it keeps the set
// of nodes that are candidates of its Cluster addresses, the pool's addresses,
// and those with a Cluster Service. Per node it keeps its claims, and two
// indexes map nodes to the addresses they own and to the addresses whose Local
// Services have endpoints on them. Memory is O(N·P + A + E) for N nodes,
// P pools, A addresses and E Local endpoint nodes.
//
// An event re-evaluates only the addresses whose candidate set or claimants it
// changes, each with one sha256 (a touch), except that an address whose owner
// or rank winner got worse (left, became ineligible, dropped its claim) is
// re-evaluated over all its candidates (a rescan: O(|C(v)|) hashes):
//
//   - Node or member event: O(P) selector matches, plus a touch for each
//     announced Cluster address of every pool whose candidate set the node
//     entered or left, for each Local address with an endpoint on the node in
//     such a pool, and for each address its claims gained or lost; a rescan for
//     each such address it owned. A label change that keeps the node's pool
//     memberships touches nothing. For the local node, also O(A) BGP checks.
//   - Service event: per address of the Service, O(Services sharing it) to
//     re-aggregate, then a touch per Local endpoint node that came or went, or
//     one rescan when the pool or the Cluster part changed.
//   - Pool event: O(N) selector matches and a rescan per address of the pool.
//
// A speaker's death therefore costs a touch per address it was a candidate for
// and a rescan per address it owned (O(A/N) of them with addresses spread by
// rank), not a pass over every Service. Claims(n) costs O(k log k) for the k
// addresses n owns, Advertised O(A log A). BenchmarkNodeEvent measures 40
// nodes and 800 addresses.
//
// An Election is not safe for concurrent use.
package election
