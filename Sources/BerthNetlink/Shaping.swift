#if canImport(Glibc)
import Glibc
#endif
import CLibNL

/// What a link's traffic is shaped to, leaving one interface: a rate (tbf),
/// and delay, jitter and loss (netem, which can carry the rate itself).
public struct Shaping: Equatable, Sendable {
    /// Bits per second.
    public var rate: UInt64?
    /// Microseconds.
    public var delay: UInt32?
    public var jitter: UInt32?
    /// Percent of packets dropped.
    public var loss: Double?

    public init(rate: UInt64? = nil, delay: UInt32? = nil, jitter: UInt32? = nil, loss: Double? = nil) {
        self.rate = rate
        self.delay = delay
        self.jitter = jitter
        self.loss = loss
    }

    /// Delay, jitter and loss need the kernel's netem qdisc (`sch_netem`).
    public var needsNetem: Bool { delay != nil || jitter != nil || loss != nil }
}

extension RouteSocket {
    /// Makes `shaping` the root qdisc of `link`: netem when it needs netem
    /// (with the rate as netem's own), tbf for a rate alone.
    public func shape(_ link: LinkInfo, _ shaping: Shaping) throws(NetlinkError) {
        guard let q = rtnl_qdisc_alloc() else { throw NetlinkError("allocate qdisc", code: NLE_NOMEM) }
        defer { rtnl_qdisc_put(q) }
        rtnl_tc_set_ifindex(q, link.index)
        rtnl_tc_set_parent(q, UInt32(TC_H_ROOT))
        rtnl_tc_set_handle(q, 0x0001_0000)
        if shaping.needsNetem {
            try check(rtnl_tc_set_kind(q, "netem"), "use netem on \(link.name)")
            if let delay = shaping.delay { rtnl_netem_set_delay(q, Int32(delay)) }
            if let jitter = shaping.jitter { rtnl_netem_set_jitter(q, Int32(jitter)) }
            if let loss = shaping.loss {
                rtnl_netem_set_loss(q, Int32(bitPattern: UInt32((min(max(loss, 0), 100) / 100 * Double(UInt32.max)).rounded())))
            }
            rtnl_netem_set_limit(q, 1000)
        } else if let rate = shaping.rate {
            try check(rtnl_tc_set_kind(q, "tbf"), "use tbf on \(link.name)")
            let bytes = rate / 8
            // A bucket of 10 ms of traffic (at least 16 KB, so a full frame always fits), queueing at most 50 ms.
            let bucket = max(bytes / 100, 16_384)
            rtnl_qdisc_tbf_set_rate(q, Int32(clamping: bytes), Int32(clamping: bucket), 0)
            try check(rtnl_qdisc_tbf_set_limit_by_latency(q, 50_000), "set the queue of \(link.name)")
        } else {
            return
        }
        try check(rtnl_qdisc_add(sk, q, NLM_F_CREATE | NLM_F_REPLACE), "shape the traffic leaving \(link.name)")
    }

    /// Whether the kernel knows qdisc `kind`: tried on `link` (a throwaway
    /// namespace's loopback), removed again.
    public func hasQdisc(_ kind: String, on link: LinkInfo) -> Bool {
        guard let q = rtnl_qdisc_alloc() else { return false }
        defer { rtnl_qdisc_put(q) }
        rtnl_tc_set_ifindex(q, link.index)
        rtnl_tc_set_parent(q, UInt32(TC_H_ROOT))
        rtnl_tc_set_handle(q, 0x0001_0000)
        guard rtnl_tc_set_kind(q, kind) >= 0 else { return false }
        if kind == "netem" { rtnl_netem_set_delay(q, 1000) }
        guard rtnl_qdisc_add(sk, q, NLM_F_CREATE | NLM_F_EXCL) >= 0 else { return false }
        _ = rtnl_qdisc_delete(sk, q)
        return true
    }
}
