from source_segment_profile.run import run

if __name__ == "__main__":
    run()
