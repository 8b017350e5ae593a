import BerthEndpoints
import BerthEnforcement
import BerthFirewall
import BerthSystem

extension BridgeOperation {
    /// GC: the IPAM releases every allocation not in the valid list, and the
    /// rules of attachments no longer valid are removed; keeps going past a
    /// failure and reports the first.
    func gc(valid: [(containerID: String, ifname: String)]) throws {
        var firstError: (any Error)?
        do { try ipam?.gc() } catch { firstError = error }
        // Locks left by processes killed while holding them (no holder now).
        LockFile.removeUnheld()
        do {
            try AttachmentRules.removeAll(network: config.network.name, except: valid)
        } catch {
            firstError = firstError ?? error
        }
        do {
            for gone in try endpoints.removeAll(network: config.network.name, except: valid) {
                try PolicyEnforcement.release(gone.pod, state: policyState)
            }
        } catch { firstError = firstError ?? error }
        if valid.isEmpty {
            do { try releaseIsolationIfLast() } catch { firstError = firstError ?? error }
        }
        if let firstError { throw firstError }
    }

    /// STATUS: ready when the IPAM could hand out an address.
    func status() throws {
        try ipam?.status()
    }
}
