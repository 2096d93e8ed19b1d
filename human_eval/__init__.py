"""Human evaluation study: builder, SQLite store, Streamlit app (a later issue builds it)."""
