import BerthIPAM

IPAMPlugin.main()
