"""The dual-graph reward: ranking (NDCG@K), query alignment (QAS), preference alignment (PAS), format."""
