import Foundation
import Testing
import BerthTestSupport

/// What bash offers, through the completion script berthctl writes, for the
/// words typed so far (run in `directory`; the last word may be empty).
func bashCompletions(_ words: [String], in directory: String) throws -> [String] {
    let script = NSTemporaryDirectory() + "berthtest-completion-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).bash"
    defer { try? FileManager.default.removeItem(atPath: script) }
    let generated = berthctl(["--generate-completion-script", "bash"])
    try #require(generated.status == 0, "\(generated.err)")
    try generated.out.write(toFile: script, atomically: true, encoding: .utf8)
    let quoted = ([berthctlPath] + words).map { "'" + $0.replacingOccurrences(of: "'", with: "'\\''") + "'" }
    let driver = """
        cd '\(directory)' && source '\(script)'
        COMP_WORDS=(\(quoted.joined(separator: " "))); COMP_CWORD=\(words.count)
        COMP_LINE="${COMP_WORDS[*]}"; COMP_POINT=${#COMP_LINE}
        _berthctl; printf '%s\\n' "${COMPREPLY[@]}"
        """
    let r = shell(["bash", "-c", driver])
    try #require(r.status == 0, "bash completion failed: \(r.out)")
    return r.out.split(separator: "\n").map(String.init)
}

extension LabEndToEndTests {
    @Test("completions: lab up offers topology files; lab down, check and exec offer the labs that are up and topology files; exec, rm, kill offer running containers; netns exec offers named namespaces")
    func completionsFromLiveState() throws {
        let lab = try LabFixture("cp"), name = lab.name, third = lab.third, file = lab.file, dir = lab.dir
        let container = "cpt\(getpid() % 100000)", namespace = "berthtest-cpns-\(getpid() % 100000)"
        defer {
            _ = berthctl(["rm", container])
            shell(["ip", "netns", "del", namespace])
            lab.cleanUp()
        }
        try "name: \(name)\nnetworks:\n  - name: n1\n    subnet: 10.226.\(third).0/24\nhosts:\n  - name: a\n    networks: [n1]\n"
            .write(toFile: file, atomically: false, encoding: .utf8)
        try "not a topology".write(toFile: "\(dir)/notes.txt", atomically: false, encoding: .utf8)
        try FileManager.default.createDirectory(atPath: "\(dir)/more", withIntermediateDirectories: true)

        // Before the lab is up: files only, the .txt left out, the directory offered.
        let up = try bashCompletions(["lab", "up", ""], in: dir)
        #expect(up.contains("lab.yaml") && (up.contains("more") || up.contains("more/")) && !up.contains("notes.txt"), "\(up)")
        #expect(!(try bashCompletions(["lab", "down", ""], in: dir)).contains(name))

        try #require(berthctl(["lab", "up", file], cniPath: LabEndToEndTests.binDir).status == 0)
        for command in [["lab", "down"], ["lab", "check"], ["lab", "exec"]] {
            let offered = try bashCompletions(command + [""], in: dir)
            #expect(offered.contains(name) && offered.contains("lab.yaml") && !offered.contains("notes.txt"), "\(command): \(offered)")
        }
        #expect(try bashCompletions(["lab", "down", String(name.prefix(2))], in: dir).contains(name))
        #expect(!(try bashCompletions(["lab", "down", "zz"], in: dir)).contains(name))

        // A running container, and a named namespace.
        let run = berthctl(["run", "--detach", "--name", container, "--", "sleep", "60"])
        try #require(run.status == 0, "\(run.err)")
        for command in [["exec"], ["rm"], ["kill"], ["inspect"]] {
            #expect(try bashCompletions(command + [""], in: dir).contains(container), "\(command)")
        }
        shell(["ip", "netns", "add", namespace])
        #expect(try bashCompletions(["netns", "exec", ""], in: dir).contains(namespace))

        // Gone from the live state, gone from the completions.
        _ = berthctl(["rm", container])
        #expect(!(try bashCompletions(["exec", ""], in: dir)).contains(container))
        #expect(berthctl(["lab", "down", name]).status == 0)
        #expect(!(try bashCompletions(["lab", "down", ""], in: dir)).contains(name))
    }
}
