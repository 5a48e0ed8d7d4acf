"""Thin layers mapping orchestration frameworks (Fabric, invoke, Salt) onto transport."""
