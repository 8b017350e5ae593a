import Foundation
import Testing
import BerthTestSupport
import BerthCNI
@testable import BerthLab
import BerthJSON
import BerthNet

@Suite("lab traffic shaping")
struct ShapingTests {
    @Test("shaping reads rates, times and percentages, and refuses the rest naming the key",
          arguments: [("{rate: 10mbit, delay: 20ms, jitter: 500us, loss: 1.5%}", nil),
                      ("{rate: 10 mbit}", "shaping.n1.rate"), ("{delay: soon}", "shaping.n1.delay"),
                      ("{loss: 150%}", "shaping.n1.loss"), ("{burst: 1}", "shaping.n1.burst")] as [(String, String?)])
    func parse(shaping: String, badKey: String?) throws {
        let text = "name: sh\nnetworks:\n  - name: n1\n    subnet: 10.230.1.0/24\nhosts:\n  - name: a\n    networks: [n1]\n    shaping: {n1: \(shaping)}\n"
        do {
            let t = try Topology.parse(text)
            #expect(badKey == nil, "accepted \(shaping)")
            let s = try #require(t.hosts[0].shaping["n1"])
            #expect(s.rate == 10_000_000 && s.delay == 20_000 && s.jitter == 500 && s.loss == 1.5 && s.needsNetem)
            #expect(t.netemUses == ["hosts[0].shaping.n1"])
        } catch let error as Topology.Problem {
            #expect(badKey.map { error.location.contains($0) } == true, "\(error)")
        }
    }
}
