"""The test bed's Python side: its connection settings and the synthetic RAGFlow dataset seeder."""
